"""damselfly: peer-to-peer distribution of AI models and other large files.

``damselfly.snapshot_download`` and ``damselfly.hf_hub_download`` mirror huggingface_hub's
functions (see ``damselfly.api``); they are imported on first use, so ``import damselfly``
stays cheap for the command-line tools.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from damselfly._version import __version__

__all__ = ["__version__", "hf_hub_download", "snapshot_download"]

if TYPE_CHECKING:
    from damselfly.api import hf_hub_download, snapshot_download

_LAZY = frozenset({"hf_hub_download", "snapshot_download"})


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from damselfly import api

        return getattr(api, name)
    raise AttributeError(f"module 'damselfly' has no attribute {name!r}")
