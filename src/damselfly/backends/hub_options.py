"""What the model hubs' options share: a token, a revision, an endpoint, a cache flag.

``HubOptions`` is the base of ``HfOptions`` and ``ModelScopeOptions``; its params are
``<prefix>_endpoint``, ``<prefix>_token``, ``<prefix>_revision``, as the hub backends read them.
Their dfget flags are ``option_flags.add_hub_flags``.
"""

from __future__ import annotations

from typing import ClassVar

from damselfly.backends.options import Params, Secret, SourceOptions, secret_value
from damselfly.core.urls import SourceUrl


class HubOptions(SourceOptions):
    param_prefix: ClassVar[str]

    token: Secret | None = None
    revision: str
    endpoint: str  # no trailing slash
    cache: bool = False  # into the hub's own cache layout (``--<prefix>-cache``)

    def request_params(self, url: SourceUrl) -> Params:
        prefix = self.param_prefix
        values = {
            f"{prefix}_endpoint": self.endpoint,
            f"{prefix}_token": secret_value(self.token),
            f"{prefix}_revision": self.revision,
        }
        return tuple((k, v) for k, v in values.items() if v)

    @property
    def cache_requested(self) -> bool:
        return self.cache

    @property
    def token_may_be_unneeded(self) -> bool:
        """A hub serves public repos to anyone: a token is needed for private and gated ones."""
        return self.token is not None
