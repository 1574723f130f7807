"""The Hugging Face backend's options: token, revision, endpoint, cache, and their resolution.

Resolved once, in the caller's process: ``--hf-token`` else ``HF_TOKEN`` else
``HUGGING_FACE_HUB_TOKEN`` else the token file under ``HF_HOME`` (read as the user: a daemon
may not be able to read it); ``--hf-base-url`` else ``HF_ENDPOINT`` else huggingface.co;
``--hf-revision`` else ``main``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from damselfly.backends.hf_api import DEFAULT_ENDPOINT, DEFAULT_REVISION, hf_option_values
from damselfly.backends.hub_options import HubOptions


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
        values = hf_option_values(
            token=token, revision=revision, endpoint=endpoint, env=env, cache=cache
        )
        return cls.model_validate(values)  # the token becomes a ``SecretStr`` here
