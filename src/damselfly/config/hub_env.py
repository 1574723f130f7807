"""The environment variables that turn a hub off, read as the hubs' own clients read them.

Light on purpose (no hub layouts, no models): dfget asks before handing a hub file to its
daemon, and every import is start-up time (issue 15: small files).
"""

from __future__ import annotations

from collections.abc import Mapping

TRUE_WORDS = frozenset({"1", "true", "yes", "on"})


def hub_offline(env: Mapping[str, str]) -> bool:
    """``HF_HUB_OFFLINE``, else ``TRANSFORMERS_OFFLINE`` when that one is unset or empty, as
    huggingface_hub reads them (true: 1, ON, YES, TRUE)."""
    value = env.get("HF_HUB_OFFLINE") or env.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().lower() in TRUE_WORDS


def modelscope_offline(env: Mapping[str, str]) -> bool:
    """``MODELSCOPE_OFFLINE`` (ours: the modelscope SDK has only ``local_files_only=True``)."""
    return env.get("MODELSCOPE_OFFLINE", "").strip().lower() in TRUE_WORDS
