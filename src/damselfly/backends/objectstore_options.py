"""The object-store backend's options: dfget's generic ``--storage-*`` flags, and the store's
own environment variables (``STORES``), resolved once in the caller's process.

A flag names a setting of whichever store the URL names (``--storage-access-key-secret`` is
``s3_secret_access_key`` for s3://, ``cos_secret_key`` for cos://); a setting with no flag
falls back to the first of the store's environment variables that is set, exactly as the
backend itself would read them.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import SecretStr

from damselfly.backends.objectstore_stores import STORES
from damselfly.backends.option_specs import Flags
from damselfly.backends.options import Params, Secret, SourceOptions, secret_value
from damselfly.core.urls import SourceUrl

# The --storage-* flags, as each store names them (None: the store has no such setting).
FLAG_SETTINGS: dict[str, tuple[str | None, ...]] = {
    # scheme: (endpoint, region, key id, key secret, session token)
    "s3": ("endpoint", "region", "access_key_id", "secret_access_key", "session_token"),
    "oss": ("endpoint", None, "access_key_id", "access_key_secret", "security_token"),
    "obs": ("endpoint", None, "access_key_id", "secret_access_key", None),
    "cos": ("endpoint", None, "secret_id", "secret_key", "security_token"),
    "abs": ("endpoint", None, "account_name", "account_key", "sas_token"),
    "gs": ("endpoint", None, None, None, "token"),
}


class ObjectStoreOptions(SourceOptions):
    endpoint: str | None = None
    region: str | None = None
    access_key_id: str | None = None
    access_key_secret: Secret | None = None
    session_token: Secret | None = None
    # params found in the caller's environment (``s3_region``: value), flags winning
    environment: dict[str, Secret] = {}

    def request_params(self, url: SourceUrl) -> Params:
        flags = self._flag_params(url.scheme)
        given = {name for name, _ in flags}
        found = ((k, v.get_secret_value()) for k, v in self.environment.items())
        return flags + tuple((k, v) for k, v in found if k not in given)

    def _flag_params(self, scheme: str) -> Params:
        names = FLAG_SETTINGS.get(scheme)
        if names is None:
            return ()
        values = (
            self.endpoint,
            self.region,
            self.access_key_id,
            secret_value(self.access_key_secret),
            secret_value(self.session_token),
        )
        return tuple(
            (f"{scheme}_{name}", value)
            for name, value in zip(names, values, strict=True)
            if name and value
        )


def _environment(scheme: str, env: Mapping[str, str]) -> dict[str, SecretStr]:
    """Each setting's first environment variable that is set, as the backend reads them."""
    spec = STORES.get(scheme)
    if spec is None:
        return {}
    found = {}
    for setting in spec.settings:
        value = next((env[n] for n in setting.env if env.get(n)), None)
        if value:
            found[spec.param_name(scheme, setting)] = SecretStr(value)
    return found


def _secret(value: str | None) -> SecretStr | None:
    return SecretStr(value) if value else None


def resolve_store_options(flags: Flags, env: Mapping[str, str], scheme: str) -> ObjectStoreOptions:
    """dfget's ``--storage-*`` flags (``option_flags.py``) and the store's environment."""
    return ObjectStoreOptions(
        endpoint=flags.get("storage_endpoint"),
        region=flags.get("storage_region"),
        access_key_id=flags.get("storage_access_key_id"),
        access_key_secret=_secret(flags.get("storage_access_key_secret")),
        session_token=_secret(flags.get("storage_session_token")),
        environment=_environment(scheme, env),
    )
