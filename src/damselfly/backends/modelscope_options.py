"""The ModelScope backend's options model: token, revision, endpoint, cache. How each is
resolved from flags and the environment is ``modelscope_values.py`` (no pydantic there)."""

from __future__ import annotations

from typing import ClassVar

from damselfly.backends.hub_options import HubOptions
from damselfly.backends.modelscope_values import DEFAULT_ENDPOINT as DEFAULT_ENDPOINT
from damselfly.backends.modelscope_values import DEFAULT_REVISION as DEFAULT_REVISION
from damselfly.backends.modelscope_values import resolve_ms_endpoint as resolve_ms_endpoint
from damselfly.backends.modelscope_values import resolve_ms_token as resolve_ms_token


class ModelScopeOptions(HubOptions):
    param_prefix: ClassVar[str] = "ms"

    revision: str = DEFAULT_REVISION
    endpoint: str = DEFAULT_ENDPOINT
