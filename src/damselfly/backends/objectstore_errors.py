"""OpenDAL failures mapped into damselfly's error tree, with secrets and URL queries cut.

Errors are rebuilt from OpenDAL's error kind, HTTP status and service error code; every URL
query is cut, and each secret value is replaced by ``***`` as a last guard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import opendal.exceptions

from damselfly.core.errors import (
    BackendError,
    ConfigError,
    DamselflyError,
    SourceAuthError,
    SourceChangedError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceStatusError,
    SourceTimeoutError,
    SourceUnreachableError,
)

_OPENDAL_ERRORS: tuple[type[Exception], ...] = tuple(
    value
    for value in vars(opendal.exceptions).values()
    if isinstance(value, type) and issubclass(value, Exception)
)
MAPPED_ERRORS: tuple[type[Exception], ...] = (*_OPENDAL_ERRORS, OSError)
_KIND_RE = re.compile(r"^(\w+) \((?:permanent|temporary|persistent)\)")
_STATUS_RE = re.compile(r"status: (\d{3})\b")
_CODE_RE = re.compile(r'code: "(\w+)", message: "([^"\n]*)"')
_SOURCE_RE = re.compile(r"(?:Source:\s*\n\s*|source: )([^\n]+)")
_URL_QUERY_RE = re.compile(r"(\w+://[^\s?#\"',}]+)[?#][^\s\"',}]*")
_NOT_FOUND_CODES = frozenset({"NoSuchBucket", "NoSuchKey", "BlobNotFound", "ContainerNotFound"})
_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"}
    | {"InvalidToken", "AuthenticationFailed", "AuthorizationFailure", "AllAccessDisabled"}
)
_UNREACHABLE_MARKERS = (
    "error sending request",
    "tcp connect error",
    "dns error",
    "connection refused",
    "connection reset",
    "connection closed",
    "broken pipe",
)


@dataclass(frozen=True)
class _Failure:
    kind: str
    status: int | None
    code: str | None
    detail: str  # one line, redacted
    text: str  # lower-cased full text, for classification only (never shown)


def map_opendal_error(
    exc: BaseException, shown_url: str, endpoint: str, secrets: tuple[str, ...] = ()
) -> DamselflyError:
    """Turn an OpenDAL exception (or the ``OSError`` its file reads raise) into our tree."""
    failure = _describe(exc, secrets)
    status, code = failure.status, failure.code
    if code in _NOT_FOUND_CODES or failure.kind == "NotFound" or status in (404, 410):
        return SourceNotFoundError(shown_url, status or 404, f"not found ({failure.detail})")
    if code in _AUTH_CODES or failure.kind == "PermissionDenied" or status in (401, 403):
        return SourceAuthError(shown_url, status or 403, f"access denied ({failure.detail})")
    if failure.kind == "ConditionNotMatch" or status == 412:
        return SourceChangedError(shown_url, "the ETag no longer matches")
    if failure.kind == "ConfigInvalid":
        return ConfigError(f"{shown_url}: invalid configuration ({failure.detail})")
    if "signing credential" in failure.text:
        return SourceAuthError(shown_url, 401, f"no usable credentials ({failure.detail})")
    return _transport_error(failure, shown_url, endpoint)


def _transport_error(failure: _Failure, shown_url: str, endpoint: str) -> BackendError:
    if failure.kind == "RangeNotSatisfied" or failure.status == 416:
        return SourceProtocolError(shown_url, f"range not satisfiable ({failure.detail})")
    if failure.kind == "RateLimited" or failure.status == 429:
        return SourceStatusError(shown_url, 429, f"rate limited ({failure.detail})")
    if any(marker in failure.text for marker in _UNREACHABLE_MARKERS):
        return SourceUnreachableError(shown_url, f"cannot reach {endpoint} ({failure.detail})")
    if "timed out" in failure.text or "timeout" in failure.text:
        return SourceTimeoutError(shown_url, f"timed out ({failure.detail})")
    if "too little data" in failure.text:
        return SourceProtocolError(shown_url, f"object ended early ({failure.detail})")
    if failure.status is not None:
        return SourceStatusError(shown_url, failure.status, f"HTTP {failure.status}")
    return BackendError(shown_url, f"{failure.kind} ({failure.detail})")


def _describe(exc: BaseException, secrets: tuple[str, ...]) -> _Failure:
    text = str(exc)
    match = _KIND_RE.match(text)
    kind = match.group(1) if match else type(exc).__name__
    status_match = _STATUS_RE.search(text)
    code_match = _CODE_RE.search(text)
    source_match = _SOURCE_RE.search(text)
    if code_match:
        detail = f"{code_match.group(1)}: {code_match.group(2)}"
    elif source_match:
        detail = source_match.group(1)
    elif status_match:
        detail = f"HTTP {status_match.group(1)}"
    else:
        detail = first_line(text).split(", context:")[0]
    return _Failure(
        kind=kind,
        status=int(status_match.group(1)) if status_match else None,
        code=code_match.group(1) if code_match else None,
        detail=redact(detail, secrets),
        text=text.lower(),
    )


def first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def strip_url(text: str) -> str:
    text = re.sub(r"(\w+://)[^/@\s]*@", r"\1", text)  # userinfo
    return _URL_QUERY_RE.sub(r"\1", text)


def redact(text: str, secrets: tuple[str, ...]) -> str:
    text = strip_url(" ".join(text.split()))
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:300]
