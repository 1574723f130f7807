"""Progress bars for the Python API, as huggingface_hub shows them: one byte bar per call
(``Downloading``/``Fetching N files``), built from ``tqdm_class`` when given, else
huggingface_hub's own tqdm (which honours ``HF_HUB_DISABLE_PROGRESS_BARS`` and
``huggingface_hub.utils.disable_progress_bars()``), else ``tqdm.auto``; none at all when
``HF_HUB_DISABLE_PROGRESS_BARS`` is true or tqdm is not installed.

The bar is fed by the download's observer events (``download/events.py``): a file's size is
added to the total when it starts, verified bytes as they arrive.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from damselfly.download.events import NullObserver

_TRUE = frozenset({"1", "true", "yes", "on"})


def bars_disabled(env: Mapping[str, str]) -> bool:
    return env.get("HF_HUB_DISABLE_PROGRESS_BARS", "").strip().lower() in _TRUE


def _default_tqdm() -> Any:
    for module, name in (("huggingface_hub.utils", "tqdm"), ("tqdm.auto", "tqdm")):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


class TqdmObserver(NullObserver):
    """A download observer drawing one byte bar; ``close`` ends it."""

    def __init__(self, description: str, tqdm_class: Any = None) -> None:
        self._bar: Any = None
        cls = tqdm_class or (None if bars_disabled(os.environ) else _default_tqdm())
        if cls is not None:
            self._bar = cls(total=0, initial=0, unit="B", unit_scale=True, desc=description)

    def file_started(self, name: str, total_bytes: int | None, held_bytes: int) -> None:
        if self._bar is None:
            return
        self._bar.total = (self._bar.total or 0) + (total_bytes or 0)
        if held_bytes:
            self._bar.update(held_bytes)
        self._bar.refresh()

    def bytes_received(self, name: str, length: int) -> None:
        if self._bar is not None:
            self._bar.update(length)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
