"""Typed, validated values for the scheduler protocol (``scheduler.proto``), without protobuf.

Both sides speak in these values; ``protocol/scheduler_codec.py`` converts them to and from
the generated protobuf messages. Every value checks itself on construction and raises
``ProtocolError`` with a message naming the field, so a malformed or absurd message from the
wire never reaches the scheduler's state (the gRPC service answers ``INVALID_ARGUMENT``).

Secrets never cross this wire: a ``TaskMeta`` URL with userinfo or a signed query, or a param
whose name looks like a credential, is refused.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from damselfly.core.digests import PIECE_DIGEST_ALGORITHM, parse_digest
from damselfly.core.errors import DamselflyError, ProtocolError
from damselfly.core.ids import signature_params
from damselfly.core.pieces import (
    MAX_PIECE_LENGTH_OVERRIDE,
    MIN_PIECE_LENGTH_OVERRIDE,
    piece_count,
)
from damselfly.core.urls import HttpUrl, parse_url
from damselfly.protocol.bitmap import PieceBitmap

MAX_PIECE_COUNT = 1 << 20
MAX_CONTENT_LENGTH = 1 << 50  # 1 PiB
MAX_UPLOAD_SLOTS = 1 << 16
MAX_UPLOAD_RATE = 1 << 44  # bytes/s, ~17 TB/s
MAX_URL_LENGTH = 8192
MAX_PARAMS = 32
MAX_PARAM_LENGTH = 1024
MAX_TEXT_LENGTH = 512
MAX_BAD_PARENTS = 256

_HOST_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_TASK_ID_RE = re.compile(r"^[0-9a-f]{64}$")
_PIECE_DIGEST_RE = re.compile(rf"^{PIECE_DIGEST_ALGORITHM}:[0-9a-f]{{64}}$")
_SECRET_WORDS = (
    "token", "auth", "password", "passwd", "secret", "signature", "cookie", "credential",
    "apikey", "api_key", "access_key",
)  # fmt: skip


class HostType(enum.Enum):
    NORMAL = "normal"
    SEED = "seed"


class Decision(enum.Enum):
    FROM_PARENTS = "from_parents"
    WAIT_FOR_SEED = "wait_for_seed"
    BACK_TO_SOURCE = "back_to_source"


class BadParentReason(enum.Enum):
    OTHER = "other"
    DIGEST = "digest"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    REFUSED = "refused"


def check_host_id(host_id: str, what: str = "host_id") -> str:
    if not _HOST_ID_RE.match(host_id):
        raise ProtocolError(f"{what} {host_id[:80]!r}: expected 1-128 of [A-Za-z0-9._-]")
    return host_id


def check_task_id(task_id: str) -> str:
    if not _TASK_ID_RE.match(task_id):
        raise ProtocolError(f"task_id {task_id[:80]!r}: expected 64 lower-case hex digits")
    return task_id


def peer_id_of(host_id: str, task_id: str) -> str:
    return f"{host_id}/{task_id}"


def split_peer_id(peer_id: str) -> tuple[str, str]:
    host_id, sep, task_id = peer_id.partition("/")
    if not sep:
        raise ProtocolError(f"peer_id {peer_id[:80]!r}: expected <host_id>/<task_id>")
    return check_host_id(host_id, "peer_id host"), check_task_id(task_id)


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ProtocolError(f"{what} {value}: must be between {low} and {high}")


def _check_text(what: str, value: str, limit: int = MAX_TEXT_LENGTH) -> None:
    if len(value) > limit:
        raise ProtocolError(f"{what}: longer than {limit} characters")


@dataclass(frozen=True)
class HostInfo:
    host_id: str
    ip: str
    upload_port: int
    type: HostType = HostType.NORMAL
    hostname: str = ""
    idc: str = ""
    location: str = ""
    upload_capacity: int = 0  # bytes/s, 0 = unlimited
    upload_slots: int = 32
    upload_slots_in_use: int = 0
    upload_rate: int = 0  # bytes/s

    def __post_init__(self) -> None:
        check_host_id(self.host_id)
        try:
            ipaddress.ip_address(self.ip)
        except ValueError as exc:
            raise ProtocolError(f"ip {self.ip[:80]!r}: not an IP address") from exc
        _check_range("upload_port", self.upload_port, 1, 65535)
        for name in ("hostname", "idc", "location"):
            _check_text(name, getattr(self, name))
        _check_range("upload_slots", self.upload_slots, 1, MAX_UPLOAD_SLOTS)
        _check_range("upload_slots_in_use", self.upload_slots_in_use, 0, MAX_UPLOAD_SLOTS)
        _check_range("upload_capacity", self.upload_capacity, 0, MAX_UPLOAD_RATE)
        _check_range("upload_rate", self.upload_rate, 0, MAX_UPLOAD_RATE)


@dataclass(frozen=True)
class TaskMeta:
    task_id: str
    url: str
    content_length: int
    piece_length: int
    params: Mapping[str, str] = field(default_factory=dict)
    digest: str = ""
    needs_credentials: bool = False

    def __post_init__(self) -> None:
        check_task_id(self.task_id)
        _check_url(self.url)
        _check_params(self.params)
        _check_range("content_length", self.content_length, 0, MAX_CONTENT_LENGTH)
        _check_range(
            "piece_length", self.piece_length, MIN_PIECE_LENGTH_OVERRIDE, MAX_PIECE_LENGTH_OVERRIDE
        )
        if self.piece_count > MAX_PIECE_COUNT:
            raise ProtocolError(
                f"{self.piece_count} pieces: more than {MAX_PIECE_COUNT} (use longer pieces)"
            )
        if self.digest:
            try:
                parse_digest(self.digest)
            except DamselflyError as exc:
                raise ProtocolError(f"digest: {exc}") from exc

    @property
    def piece_count(self) -> int:
        return piece_count(self.content_length, self.piece_length)

    def same_content_as(self, other: TaskMeta) -> bool:
        return (self.content_length, self.piece_length) == (
            other.content_length,
            other.piece_length,
        )


def _check_url(url: str) -> None:
    if len(url) > MAX_URL_LENGTH:
        raise ProtocolError(f"url: longer than {MAX_URL_LENGTH} characters")
    try:
        parsed = parse_url(url)
    except DamselflyError as exc:
        raise ProtocolError(f"url: {exc}") from exc
    if isinstance(parsed, HttpUrl):
        names = [pair.partition("=")[0] for pair in parsed.query.split("&") if pair]
        if parsed.username is not None or signature_params(names):
            raise ProtocolError("url: carries credentials (userinfo or a signed query)")


def _check_params(params: Mapping[str, str]) -> None:
    if len(params) > MAX_PARAMS:
        raise ProtocolError(f"params: more than {MAX_PARAMS} entries")
    for name, value in params.items():
        _check_text("params key", name, MAX_PARAM_LENGTH)
        _check_text(f"params[{name!r}]", value, MAX_PARAM_LENGTH)
        if any(word in name.lower() for word in _SECRET_WORDS):
            raise ProtocolError(f"params[{name!r}]: looks like a credential; never sent")


@dataclass(frozen=True)
class PieceDigest:
    number: int
    digest: str

    def __post_init__(self) -> None:
        _check_range("piece number", self.number, 0, MAX_PIECE_COUNT - 1)
        if not _PIECE_DIGEST_RE.match(self.digest):
            raise ProtocolError(
                f"piece {self.number} digest {self.digest[:80]!r}: "
                f"expected {PIECE_DIGEST_ALGORITHM}:<64 hex>"
            )


@dataclass(frozen=True)
class TaskHolding:
    task: TaskMeta
    pieces: PieceBitmap
    origin_reader: bool = False
    digests: tuple[PieceDigest, ...] = ()

    def __post_init__(self) -> None:
        if self.pieces.piece_count != self.task.piece_count:
            raise ProtocolError("holding: bitmap and task disagree on the piece count")
        if self.digests and not self.origin_reader:
            raise ProtocolError("holding: digests are only accepted from an origin reader")
        check_piece_numbers(self.task, (d.number for d in self.digests))


def check_piece_numbers(task: TaskMeta, numbers: Iterable[int]) -> None:
    """Every number in ``numbers`` is a piece of ``task``."""
    for number in numbers:
        if not 0 <= number < task.piece_count:
            raise ProtocolError(
                f"piece {number} out of range for task {task.task_id[:12]}... "
                f"({task.piece_count} pieces)"
            )


@dataclass(frozen=True)
class BadParent:
    peer_id: str
    reason: BadParentReason = BadParentReason.OTHER
    detail: str = ""

    def __post_init__(self) -> None:
        split_peer_id(self.peer_id)
        _check_text("bad parent detail", self.detail)


@dataclass(frozen=True)
class PeerReport:
    host_id: str
    task_id: str
    pieces: tuple[int, ...] = ()
    digests: tuple[PieceDigest, ...] = ()
    bad_parents: tuple[BadParent, ...] = ()
    finished: bool = False
    failed: bool = False
    failure_reason: str = ""
    want_parents: bool = False
    content_rejected: bool = False  # peers' bytes failed a check against the origin

    def __post_init__(self) -> None:
        check_host_id(self.host_id)
        check_task_id(self.task_id)
        if len(self.pieces) > MAX_PIECE_COUNT or len(self.digests) > MAX_PIECE_COUNT:
            raise ProtocolError(f"report: more than {MAX_PIECE_COUNT} pieces")
        if len(self.bad_parents) > MAX_BAD_PARENTS:
            raise ProtocolError(f"report: more than {MAX_BAD_PARENTS} bad parents")
        if self.finished and self.failed:
            raise ProtocolError("report: finished and failed at once")
        _check_text("failure_reason", self.failure_reason)

    @property
    def peer_id(self) -> str:
        return peer_id_of(self.host_id, self.task_id)


@dataclass(frozen=True)
class ParentInfo:
    peer_id: str
    host_id: str
    ip: str
    upload_port: int
    type: HostType
    pieces: PieceBitmap
    free_upload_slots: int
    free_upload_rate: int  # bytes/s, 0 = unlimited or unknown
    origin_reader: bool = False


@dataclass(frozen=True)
class Registration:
    """The answer to ``RegisterPeer``."""

    peer_id: str
    decision: Decision
    parents: tuple[ParentInfo, ...]
    digests: tuple[PieceDigest, ...]
    piece_count: int
    piece_grant: str = ""  # private task over mTLS: shown to parents (security/grants.py)


@dataclass(frozen=True)
class ReportAnswer:
    """The answer to ``ReportPeer``: a decision and parents only when asked."""

    decision: Decision | None = None
    parents: tuple[ParentInfo, ...] = ()


@dataclass(frozen=True)
class DigestPage:
    digests: tuple[PieceDigest, ...]
    piece_count: int
    truncated: bool
