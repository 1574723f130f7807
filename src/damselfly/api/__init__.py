"""The Python API: drop-ins for huggingface_hub's download functions (``api/hf.py``) and the
modelscope SDK's (``damselfly.modelscope``), served by damselfly's pipeline.

The functions are imported when first used, so a submodule (``api.offline``, read by dfget
without a hub request) does not pull in the HTTP client.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from damselfly.api.hf import hf_hub_download, snapshot_download

__all__ = ["hf_hub_download", "snapshot_download"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from damselfly.api import hf

        return getattr(hf, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
