"""Turn what the Hugging Face Hub (or its CDN) answered into a typed damselfly error.

One function, ``hub_error``, reads the status and the hub's ``X-Error-Code`` /
``X-Error-Message`` headers (huggingface_hub reads the same ones)::

    X-Error-Code / status                       error                 message
    RevisionNotFound                            HubRevisionNotFound   <repo>: revision <rev> not found
    EntryNotFound                               HubEntryNotFound      <repo>: file <path> not found at <rev>
    GatedRepo (401/403)                         HubGatedRepo          <repo>: gated repository: accept ...
    401 "Invalid credentials in Authorization"  SourceAuthError       <repo>: the hub rejected the token ...
    RepoNotFound, any other 401                 HubRepoNotFound       <repo>: repository not found (or private: ...)
    other 403                                   SourceAuthError       <repo>: access denied (HTTP 403)
    other 404                                   HubEntryNotFound      <repo>: <what> <path> not found at <rev>
    anything else                               SourceStatusError     <repo>: hub answered HTTP <status>

Messages start with the repo as the user wrote it (``owner/repo``, ``datasets/owner/repo``);
the error's ``url`` field is the hf:// URL. The ``Hub*Error`` classes (``*Error`` left out of the
table) subclass ``SourceNotFoundError`` / ``SourceAuthError``, so the Python API can raise
huggingface_hub's matching classes (``api/hf_errors.py``). Nothing here ever sees a token, and CDN URLs (signed,
so secret-ish) are named by host only.
"""  # noqa: E501

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar

from damselfly.backends.hf_api import host_label, repo_label
from damselfly.core.errors import (
    BackendError,
    SourceAuthError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceStatusError,
    SourceTimeoutError,
    SourceUnreachableError,
)
from damselfly.core.urls import HubUrl

AUTH_HINT = "set --hf-token or HF_TOKEN"
_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

E = TypeVar("E", bound=BackendError)


class HubRepoNotFoundError(SourceNotFoundError):
    """No such repository, or a private one without a (valid) token."""


class HubRevisionNotFoundError(SourceNotFoundError):
    """The repository exists; the branch, tag or commit does not."""


class HubEntryNotFoundError(SourceNotFoundError):
    """The revision exists; the file or folder does not."""


class HubGatedRepoError(SourceAuthError):
    """A gated repository whose terms the token's user has not accepted."""


@dataclass(frozen=True)
class HubCall:
    """What a request was about, for error messages."""

    url: HubUrl
    endpoint: str
    revision: str
    what: str = "file"  # "file" (resolve) | "folder" (tree) | "repository" (revision info)

    @property
    def label(self) -> str:
        return repo_label(self.url)


def hub_error(call: HubCall, status: int, headers: Mapping[str, str]) -> BackendError:
    code = headers.get("X-Error-Code", "")
    message = headers.get("X-Error-Message", "")
    url = call.url.redacted()
    if code == "RevisionNotFound":
        reason = f"revision {call.revision} not found"
        return _named(HubRevisionNotFoundError(url, status, reason), call)
    if code == "EntryNotFound":
        return _not_found(call, status)
    if code == "GatedRepo":
        reason = f"gated repository: accept its terms on the hub and {AUTH_HINT}"
        return _named(HubGatedRepoError(url, status, reason), call)
    if status == 401 and message == _INVALID_CREDENTIALS:
        reason = "the hub rejected the token (invalid credentials): check --hf-token or HF_TOKEN"
        return _named(SourceAuthError(url, status, reason), call)
    if code == "RepoNotFound" or status == 401:
        reason = f"repository not found (or private: {AUTH_HINT})"
        return _named(HubRepoNotFoundError(url, status, reason), call)
    if status == 403:
        return _named(SourceAuthError(url, status, "access denied (HTTP 403)"), call)
    if status in (404, 410):
        return _not_found(call, status)
    return _named(SourceStatusError(url, status, f"hub answered HTTP {status}"), call)


def cdn_error(call: HubCall, cdn_url: str, status: int) -> BackendError:
    """The CDN refused a file (after one fresh redirect from the hub)."""
    reason = f"CDN {host_label(cdn_url)} answered HTTP {status} for {call.url.path}"
    if status in (401, 403):
        return _named(SourceAuthError(call.url.redacted(), status, reason), call)
    if status in (404, 410):
        return _named(SourceNotFoundError(call.url.redacted(), status, reason), call)
    return _named(SourceStatusError(call.url.redacted(), status, reason), call)


def protocol_error(
    call: HubCall, reason: str, kind: type[SourceProtocolError] = SourceProtocolError
) -> SourceProtocolError:
    """The hub or CDN answered something we cannot use (bad JSON, wrong range, ...)."""
    return _named(kind(call.url.redacted(), reason), call)


def unreachable(call: HubCall, target: str, detail: str, *, hub: bool) -> SourceUnreachableError:
    where = f"hub {call.endpoint}" if hub else f"CDN {host_label(target)}"
    return _named(
        SourceUnreachableError(call.url.redacted(), f"{where} unreachable: {detail}"), call
    )


def timed_out(call: HubCall, target: str, timeout: float, *, hub: bool) -> SourceTimeoutError:
    where = f"hub {call.endpoint}" if hub else f"CDN {host_label(target)}"
    reason = f"{where} did not answer within {timeout:g}s"
    return _named(SourceTimeoutError(call.url.redacted(), reason), call)


def _not_found(call: HubCall, status: int) -> SourceNotFoundError:
    if call.what == "repository" or not call.url.path:
        reason = f"{call.what} not found at {call.revision}"
    else:
        reason = f"{call.what} {call.url.path} not found at {call.revision}"
    kind = HubRepoNotFoundError if call.what == "repository" else HubEntryNotFoundError
    return _named(kind(call.url.redacted(), status, reason), call)


def _named(error: E, call: HubCall) -> E:
    """Message ``<repo>: <reason>`` (the url field keeps the hf:// URL)."""
    return worded(error, f"{call.label}: {error.reason}")


def worded(error: E, message: str) -> E:
    """Give ``error`` the exact message ``message`` (fields unchanged)."""
    error.message = message
    error.args = (message,)
    return error
