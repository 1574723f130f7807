"""huggingface_hub's exception classes for damselfly's hub errors, so ``except`` clauses
written for huggingface_hub keep working.

When huggingface_hub is installed, an error the API raises is an instance of a class that
subclasses both damselfly's class and huggingface_hub's (``RepositoryNotFoundError``,
``RevisionNotFoundError``, ``RemoteEntryNotFoundError`` (an ``EntryNotFoundError``),
``GatedRepoError``, ``LocalEntryNotFoundError``, ``IncompleteSnapshotError`` (one of those),
``HfHubHTTPError`` for any other status), with huggingface_hub's attributes
(``response.status_code``, ``server_message``, ``request_id``). Without huggingface_hub,
damselfly's own classes are raised unchanged. The combined classes are made once per pair and
keep damselfly's message.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from damselfly.backends.hf_errors import (
    HubEntryNotFoundError,
    HubGatedRepoError,
    HubRepoNotFoundError,
    HubRevisionNotFoundError,
)
from damselfly.core.errors import BackendError, DamselflyError, SourceStatusError

_HF_NAMES: tuple[tuple[type[DamselflyError], str], ...] = (
    (HubGatedRepoError, "GatedRepoError"),
    (HubRepoNotFoundError, "RepositoryNotFoundError"),
    (HubRevisionNotFoundError, "RevisionNotFoundError"),
    (HubEntryNotFoundError, "RemoteEntryNotFoundError"),
    (SourceStatusError, "HfHubHTTPError"),
)


class CacheMissError(DamselflyError, FileNotFoundError):
    """Offline (``local_files_only``, ``HF_HUB_OFFLINE``, or the hub unreachable) and the
    local caches do not hold what was asked for."""


class IncompleteSnapshotError(CacheMissError):
    """Offline, and the cached listing (``trees/<commit>.json``) shows files missing from the
    snapshot: an interrupted download. ``snapshot_path`` is that folder."""

    def __init__(self, message: str, snapshot_path: str) -> None:
        super().__init__(message)
        self.snapshot_path = snapshot_path


class DryRunError(DamselflyError):
    """``dry_run`` needs the hub, which cannot be reached."""


def hf_errors() -> ModuleType | None:
    """huggingface_hub's ``errors`` module, if installed (imported on first need only)."""
    try:
        return importlib.import_module("huggingface_hub.errors")
    except ImportError:
        return None


def as_hf_error(error: DamselflyError) -> BaseException:
    """``error`` as an instance of huggingface_hub's matching class too (module docstring)."""
    module = hf_errors()
    name = _hf_name(error)
    if module is None or name is None or not hasattr(module, name):
        return error
    clone = clone_as(error, getattr(module, name))
    if isinstance(clone, module.HfHubHTTPError):
        _add_response(clone, error)
    return clone


def _hf_name(error: DamselflyError) -> str | None:
    if isinstance(error, IncompleteSnapshotError):
        return "IncompleteSnapshotError"
    if isinstance(error, CacheMissError):
        return "LocalEntryNotFoundError"
    if isinstance(error, DryRunError):
        return "DryRunError"
    return next((name for kind, name in _HF_NAMES if isinstance(error, kind)), None)


_COMBINED: dict[tuple[type, type], type[BaseException]] = {}


def clone_as(error: DamselflyError, theirs: type[BaseException]) -> BaseException:
    """``error`` (same message and fields) as an instance of a class that subclasses both
    ``type(error)`` and ``theirs``; the class is made once per pair."""
    key = (type(error), theirs)
    if key not in _COMBINED:
        bases = (type(error), theirs)
        _COMBINED[key] = type(theirs.__name__, bases, {"__module__": __name__})
    combined = _COMBINED[key]
    clone = combined.__new__(combined, *error.args)
    clone.__dict__.update(error.__dict__)
    clone.__traceback__ = error.__traceback__
    return clone


def _add_response(clone: Any, error: DamselflyError) -> None:
    httpx = importlib.import_module("httpx2")
    status = error.status if isinstance(error, SourceStatusError) else 500
    url = error.url if isinstance(error, BackendError) else "https://invalid"
    if not url.startswith(("http://", "https://")):
        url = "https://hub.invalid/" + url.partition("://")[2]
    request = httpx.Request("GET", url)
    clone.response = httpx.Response(status, request=request)
    clone.request = request
    clone.server_message = None
    clone.request_id = None
