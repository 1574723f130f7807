"""The ModelScope backend's options: token, revision, endpoint, cache, and their resolution.

``--ms-base-url`` else ``MODELSCOPE_ENDPOINT`` else ``MODELSCOPE_DOMAIN`` (a bare domain means
``https://<domain>``) else modelscope.cn; ``--ms-token`` else ``MODELSCOPE_API_TOKEN`` else the
login the modelscope SDK saved (``MODELSCOPE_HOME``, read as the user);
``--ms-revision`` else ``master``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from pydantic import SecretStr

from damselfly.backends.hub_options import HubOptions
from damselfly.backends.modelscope_login import stored_ms_token
from damselfly.backends.option_specs import Flags

DEFAULT_ENDPOINT = "https://modelscope.cn"
DEFAULT_REVISION = "master"


def resolve_ms_endpoint(explicit: str | None, env: Mapping[str, str]) -> str:
    """The endpoint (see the module docstring), without a trailing slash."""
    for value in (explicit, env.get("MODELSCOPE_ENDPOINT")):
        if value and value.strip():
            return value.strip().rstrip("/")
    domain = (env.get("MODELSCOPE_DOMAIN") or "").strip().rstrip("/")
    if domain:
        return domain if "://" in domain else f"https://{domain}"
    return DEFAULT_ENDPOINT


def resolve_ms_token(explicit: str | None, env: Mapping[str, str]) -> str | None:
    """``--ms-token``, else ``MODELSCOPE_API_TOKEN``, else what ``modelscope login`` saved
    (``modelscope_login.py``), else no token."""
    for value in (explicit, env.get("MODELSCOPE_API_TOKEN")):
        if value and value.strip():
            return value.strip()
    return stored_ms_token(env)


class ModelScopeOptions(HubOptions):
    param_prefix: ClassVar[str] = "ms"

    revision: str = DEFAULT_REVISION
    endpoint: str = DEFAULT_ENDPOINT


def resolve_ms_options(flags: Flags, env: Mapping[str, str]) -> ModelScopeOptions:
    """dfget's ``--ms-*`` flags (``option_flags.py``) and the environment, as options."""
    token = resolve_ms_token(flags.get("ms_token"), env)
    return ModelScopeOptions(
        token=SecretStr(token) if token else None,
        revision=flags.get("ms_revision") or DEFAULT_REVISION,
        endpoint=resolve_ms_endpoint(flags.get("ms_base_url"), env).rstrip("/"),
        cache=bool(flags.get("ms_cache")),
    )
