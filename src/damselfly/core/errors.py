"""Typed errors for every layer, under one root.

Adapters (aiohttp, OpenDAL, sqlite3, the OS) raise their own exceptions; each adapter maps
them once, at its edge, into this tree with ``raise ... from exc``. Everything above the
adapters catches only these. The CLI maps a ``DamselflyError`` to one line on stderr and an
exit code (``exit_code``); services map it to an HTTP status (``http_status``).

Several classes also subclass a builtin so callers who think in builtins still catch them
(``SourceNotFoundError`` is a ``FileNotFoundError``), as huggingface_hub does.

::

    DamselflyError
    ├── UsageError                      bad flags or arguments (exit 2)
    │   └── InvalidUrlError             malformed URL; names the part that is wrong (ValueError)
    ├── ConfigError                     a settings file or value is invalid
    ├── BackendError                    talking to an origin failed; carries ``url``
    │   ├── UnsupportedSchemeError      no backend registered for the scheme
    │   ├── SourceUnreachableError      DNS, connect, TLS, reset (ConnectionError)
    │   ├── SourceTimeoutError          the origin stopped answering (TimeoutError)
    │   ├── SourceStatusError           an HTTP-like status we cannot use; carries ``status``
    │   │   ├── SourceAuthError         401/403 (PermissionError)
    │   │   └── SourceNotFoundError     404 / no such object (FileNotFoundError)
    │   ├── SourceProtocolError         ignored Range, short body, bad listing, ...
    │   └── SourceChangedError          the object changed at the origin mid-download
    ├── IntegrityError                  bytes do not match their digest
    │   ├── PieceDigestError            one piece failed verification
    │   └── FileDigestError             the whole file failed verification
    ├── StorageError                    the local store failed
    │   ├── DiskFullError               ENOSPC or the configured quota (OSError)
    │   │   └── NoSpaceError            refused before starting: N bytes do not fit
    │   └── OutputError                 the output path cannot be used; carries ``path``
    ├── DownloadTimeoutError            --timeout elapsed (TimeoutError)
    ├── PeerError                       a parent misbehaved or went away
    ├── SchedulerError                  the scheduler is unreachable or refused us
    ├── ProtocolError                   a malformed message on one of our own wires
    └── BlockedError                    the cluster's blocklist forbids the download
"""

from __future__ import annotations

QUOTE_LENGTH = 200  # characters of user input an error message quotes

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def shorten(text: str, limit: int = QUOTE_LENGTH) -> str:
    """User input as a message quotes it: at most ``limit`` characters, then ``...`` (a
    70,000-character URL must not make a 140 KB error line)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def quoted(text: str, limit: int = QUOTE_LENGTH) -> str:
    """``repr`` of user input, cut by ``shorten``."""
    return repr(shorten(text, limit))


class DamselflyError(Exception):
    """Root of every error damselfly raises on purpose."""

    exit_code = EXIT_FAILURE
    http_status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(DamselflyError):
    exit_code = EXIT_USAGE
    http_status = 400


class InvalidUrlError(UsageError, ValueError):
    """A URL that does not parse; ``part`` names what is wrong (scheme, host, bucket, ...)."""

    def __init__(self, url: str, part: str, reason: str) -> None:
        super().__init__(f"invalid URL {quoted(url)}: {part}: {shorten(reason)}")
        self.url = url
        self.part = part
        self.reason = reason


class ConfigError(DamselflyError):
    exit_code = EXIT_USAGE
    http_status = 400


class BackendError(DamselflyError):
    http_status = 502

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"{shorten(url)}: {reason}")
        self.url = url
        self.reason = reason


class UnsupportedSchemeError(BackendError, UsageError):
    exit_code = EXIT_USAGE
    http_status = 400


class SourceUnreachableError(BackendError, ConnectionError):
    pass


class SourceTimeoutError(BackendError, TimeoutError):
    http_status = 504


class SourceStatusError(BackendError):
    def __init__(self, url: str, status: int, reason: str) -> None:
        super().__init__(url, reason)
        self.status = status


class SourceAuthError(SourceStatusError, PermissionError):
    http_status = 403


class SourceNotFoundError(SourceStatusError, FileNotFoundError):
    http_status = 404


class SourceProtocolError(BackendError):
    pass


class SourceChangedError(BackendError):
    """The origin now serves another version than the one the download started from
    (another validator or total length): bytes of the two must never meet in one file."""

    def __init__(self, url: str, detail: str = "") -> None:
        reason = "changed at the origin during the download"
        super().__init__(url, f"{reason} ({detail})" if detail else reason)
        self.detail = detail


class IntegrityError(DamselflyError):
    http_status = 502


class PieceDigestError(IntegrityError):
    def __init__(self, piece_number: int, expected: str, actual: str, source: str = "") -> None:
        where = f" from {source}" if source else ""
        super().__init__(
            f"piece {piece_number}{where} failed verification: expected {expected}, got {actual}"
        )
        self.piece_number = piece_number
        self.expected = expected
        self.actual = actual
        self.source = source


class FileDigestError(IntegrityError):
    def __init__(self, url: str, expected: str, actual: str) -> None:
        super().__init__(f"{url}: digest mismatch: expected {expected}, got {actual}")
        self.url = url
        self.expected = expected
        self.actual = actual


class StorageError(DamselflyError):
    pass


class DiskFullError(StorageError, OSError):
    http_status = 507


class NoSpaceError(DiskFullError):
    """A task that cannot fit even after garbage collection; refused before it starts."""

    def __init__(
        self, needed_bytes: int, store: str, free_bytes: int, quota_bytes: int | None = None
    ) -> None:
        limit = "" if quota_bytes is None else f" within its quota of {quota_bytes}"
        super().__init__(f"no space for {needed_bytes} bytes in {store} (free {free_bytes}{limit})")
        self.needed_bytes = needed_bytes
        self.store = store
        self.free_bytes = free_bytes
        self.quota_bytes = quota_bytes


class OutputError(StorageError):
    exit_code = EXIT_FAILURE

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"output {shorten(path)}: {reason}")
        self.path = path
        self.reason = reason


class DownloadTimeoutError(DamselflyError, TimeoutError):
    http_status = 504


class PeerError(DamselflyError):
    http_status = 502


class SchedulerError(DamselflyError):
    http_status = 503


class ProtocolError(DamselflyError):
    http_status = 400


BLOCKED_DETAIL_PREFIX = "blocked: "  # how a scheduler's refusal says "blocklist" on the wire


class BlockedError(DamselflyError, PermissionError):
    """The cluster's blocklist forbids this download; the message names the rule."""

    http_status = 403
