"""The ModelScope backend's options model: token, revision, endpoint, cache. How each is
resolved from flags and the environment is ``modelscope_values.py`` (no pydantic there)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from damselfly.backends.hub_options import HubOptions
from damselfly.backends.modelscope_values import DEFAULT_ENDPOINT as DEFAULT_ENDPOINT
from damselfly.backends.modelscope_values import DEFAULT_REVISION as DEFAULT_REVISION
from damselfly.backends.modelscope_values import ms_flag_values
from damselfly.backends.modelscope_values import resolve_ms_endpoint as resolve_ms_endpoint
from damselfly.backends.modelscope_values import resolve_ms_token as resolve_ms_token
from damselfly.backends.option_specs import Flags


class ModelScopeOptions(HubOptions):
    param_prefix: ClassVar[str] = "ms"

    revision: str = DEFAULT_REVISION
    endpoint: str = DEFAULT_ENDPOINT


def resolve_ms_options(flags: Flags, env: Mapping[str, str]) -> ModelScopeOptions:
    """dfget's ``--ms-*`` flags (``option_flags.py``) and the environment, as options."""
    return ModelScopeOptions.model_validate(ms_flag_values(flags, env))
