"""The Hugging Face backend's options: token, revision, endpoint, cache, and their resolution.

Resolved once, in the caller's process: ``--hf-token`` else ``HF_TOKEN`` else
``HUGGING_FACE_HUB_TOKEN`` else the token file under ``HF_HOME`` (read as the user: a daemon
may not be able to read it); ``--hf-base-url`` else ``HF_ENDPOINT`` else huggingface.co;
``--hf-revision`` else ``main``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import SecretStr

from damselfly.backends.hf_api import DEFAULT_ENDPOINT, DEFAULT_REVISION, resolve_hf_token
from damselfly.backends.hub_options import HubOptions
from damselfly.backends.option_specs import Flags


class HfOptions(HubOptions):
    param_prefix: ClassVar[str] = "hf"

    revision: str = DEFAULT_REVISION
    endpoint: str = DEFAULT_ENDPOINT

    @classmethod
    def resolve(
        cls,
        *,
        token: str | None,
        revision: str | None,
        endpoint: str | None,
        env: Mapping[str, str],
        cache: bool = False,
    ) -> HfOptions:
        found = resolve_hf_token(token, env)
        base = endpoint or env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
        return cls(
            token=SecretStr(found) if found else None,
            revision=revision or DEFAULT_REVISION,
            endpoint=base.rstrip("/"),
            cache=cache,
        )


def resolve_hf_options(flags: Flags, env: Mapping[str, str]) -> HfOptions:
    """dfget's ``--hf-*`` flags (``option_flags.py``) and the environment, as options."""
    return HfOptions.resolve(
        token=flags.get("hf_token"),
        revision=flags.get("hf_revision"),
        endpoint=flags.get("hf_base_url"),
        env=env,
        cache=bool(flags.get("hf_cache")),
    )
