"""What the model hubs' options share: a token, a revision, an endpoint, a cache flag.

``HubOptions`` is the base of ``HfOptions`` and ``ModelScopeOptions``; its params are
``<prefix>_endpoint``, ``<prefix>_token``, ``<prefix>_revision``, as the hub backends read them.
``add_hub_flags`` adds ``--<prefix>-token``, ``--<prefix>-revision``, ``--<prefix>-base-url``
and ``--<prefix>-cache`` to dfget's "model hubs" group.
"""

from __future__ import annotations

import argparse
from typing import ClassVar

from damselfly.backends.options import (
    FlagDefaults,
    Params,
    Secret,
    SourceOptions,
    flag_group,
    secret_value,
)
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


def add_hub_flags(
    parser: argparse.ArgumentParser,
    e: FlagDefaults,
    prefix: str,
    cache_help: str,
    safer_token: str,
) -> None:
    """``safer_token``: where else the token can come from, named in ``--<prefix>-token``'s
    help (argv is visible to every user in the process list)."""
    hub = flag_group(parser, "model hubs")
    hub.add_argument(
        f"--{prefix}-token",
        default=e.text(f"{prefix}_token"),
        metavar="TOKEN",
        help=f"visible to every user in the process list (ps): prefer {safer_token}",
    )
    hub.add_argument(f"--{prefix}-revision", default=e.text(f"{prefix}_revision"))
    hub.add_argument(f"--{prefix}-base-url", default=e.text(f"{prefix}_base_url"))
    hub.add_argument(
        f"--{prefix}-cache", action="store_true", default=e.flag(f"{prefix}_cache"), help=cache_help
    )
