"""Per-scheme request options: the base of each backend's typed model.

A backend that needs more than headers (a hub token and revision, object-store credentials)
describes it in an ``OptionsSpec`` (``backends/option_specs.py``: its flags, its resolution,
this model). ``resolve`` turns the flags plus the caller's environment into the model, once,
in the caller's process (a daemon may not read the caller's token file). The model travels
inside ``DownloadRequest.source`` (over the daemon's local API as JSON) and becomes
``RequestOptions.params`` only at the backend's door (``request_params``).

Secrets are ``Secret`` (``SecretStr``): masked in ``repr`` and logs, written in clear only into
the JSON sent over the local socket.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, PlainSerializer, SecretStr

from damselfly.core.urls import SourceUrl

Secret = Annotated[
    SecretStr, PlainSerializer(lambda s: s.get_secret_value(), return_type=str, when_used="json")
]
Params = tuple[tuple[str, str], ...]


class SourceOptions(BaseModel):
    """Base of every backend's options: frozen, strict, unknown fields refused."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    def request_params(self, url: SourceUrl) -> Params:
        """The ``RequestOptions.params`` this backend reads for ``url``."""
        return ()

    @property
    def cache_requested(self) -> bool:
        """Whether the download goes into the source's own cache layout (a hub's cache)."""
        return False

    @property
    def token_may_be_unneeded(self) -> bool:
        """Whether these options carry a credential that the origin may not need for a given
        file (a hub token, sent for gated or private repos, for public ones too): the
        download then asks the origin without it (``download/public_files.py``)."""
        return False


def secret_value(secret: SecretStr | None) -> str | None:
    return secret.get_secret_value() if secret is not None else None
