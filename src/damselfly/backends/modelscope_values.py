"""ModelScope's endpoint, token and revision from flags and the environment, without the
options model: dfget hands a modelscope:// file to its daemon as the JSON
``ModelScopeOptions`` would write, never importing pydantic (issue 15: small files).

``--ms-base-url`` else ``MODELSCOPE_ENDPOINT`` else ``MODELSCOPE_DOMAIN`` (a bare domain means
``https://<domain>``) else modelscope.cn; ``--ms-token`` else ``MODELSCOPE_API_TOKEN`` else the
login the modelscope SDK saved (``MODELSCOPE_HOME``, read as the user);
``--ms-revision`` else ``master``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from damselfly.backends.modelscope_login import stored_ms_token

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


def ms_flag_values(flags: Mapping[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """dfget's ``--ms-*`` flags and the environment as ``ModelScopeOptions``' JSON (the token
    in clear: it goes to the local daemon only)."""
    return {
        "token": resolve_ms_token(flags.get("ms_token"), env),
        "revision": flags.get("ms_revision") or DEFAULT_REVISION,
        "endpoint": resolve_ms_endpoint(flags.get("ms_base_url"), env).rstrip("/"),
        "cache": bool(flags.get("ms_cache")),
    }
