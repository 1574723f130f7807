"""The piece-transfer wire between daemons: paths, headers, bitmaps and watch lines.

Pure code (no sockets), shared by the upload server (``daemon/servers/upload_server.py``) and
the piece client (``transport/piece_client.py``). The contract is ``docs/p2p.md``, "Piece transfer":

- ``GET /v1/tasks/{task_id}/pieces/{number}``: 200 with exactly the piece's bytes
  (``Content-Length`` = piece length), 404 when the piece is not held, 429 with
  ``Retry-After`` when every upload slot is busy, 400 for a malformed task id or number.
- ``GET /v1/tasks/{task_id}/bitmap``: ``{"piece_count": N, "held": "<base64>"}``; bit ``i`` of
  the bitmap is piece ``i``, most significant bit of each byte first, ``ceil(N / 8)`` bytes,
  bits past ``N`` zero.
- ``GET /v1/tasks/{task_id}/bitmap?watch=1``: NDJSON. The first line is the bitmap object;
  then ``{"piece": n}`` for each piece that lands, an empty line as a heartbeat every
  ``WATCH_HEARTBEAT_INTERVAL`` seconds when nothing happens, and ``{"complete": true}`` as the
  last line once every piece is held (the server then ends the response). A stream that ends
  without that line means the parent went away.

Anything a peer sends is untrusted: the parsers here raise ``ProtocolError`` on malformed input
and never return a piece number outside ``[0, piece_count)``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from damselfly.core.errors import ProtocolError
from damselfly.protocol.bitmap import PieceBitmap, bitmap_length

API_PREFIX = "/v1/tasks"
PIECE_ROUTE = API_PREFIX + "/{task_id}/pieces/{number}"
BITMAP_ROUTE = API_PREFIX + "/{task_id}/bitmap"
WATCH_QUERY = "watch"

DEFAULT_UPLOAD_PORT = 4000  # Dragonfly's upload port
RETRY_AFTER_HEADER = "Retry-After"
BUSY_RETRY_AFTER_SECONDS = 1
PIECE_CONTENT_TYPE = "application/octet-stream"
BITMAP_CONTENT_TYPE = "application/json"
WATCH_CONTENT_TYPE = "application/x-ndjson"
WATCH_HEARTBEAT_INTERVAL = 5.0

# The same rule as the store's (``storage.content.TASK_ID_RE``; a unit test keeps them equal):
# ids become file names. Repeated here because protocol sits below storage.
TASK_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_-]{1,127}"
_TASK_ID_RE = re.compile(TASK_ID_PATTERN)
MAX_PIECE_NUMBER = 2**31 - 1
_PIECE_NUMBER_RE = re.compile(r"0|[1-9][0-9]{0,9}")
_PIECE_LINE = re.compile(rb'\{"piece": (0|[1-9][0-9]{0,9})\}')  # a watch line as written


# -- ids, numbers and paths ---------------------------------------------------------------------


def validate_task_id(task_id: str) -> str:
    """Return ``task_id`` if it has the store's shape, else raise ``ProtocolError``."""
    if not _TASK_ID_RE.fullmatch(task_id):
        raise ProtocolError(f"task id {task_id[:140]!r}: expected 2-128 of [A-Za-z0-9_-]")
    return task_id


def validate_piece_number(number: int) -> int:
    if isinstance(number, bool) or not isinstance(number, int):
        raise ProtocolError(f"piece number {number!r}: not an integer")
    if not 0 <= number <= MAX_PIECE_NUMBER:
        raise ProtocolError(f"piece number {number}: out of range 0..{MAX_PIECE_NUMBER}")
    return number


def parse_piece_number(text: str) -> int:
    """A path segment as a piece number: plain decimal digits, no sign, no leading zeros."""
    if not _PIECE_NUMBER_RE.fullmatch(text):
        raise ProtocolError(f"piece number {text[:20]!r}: expected a non-negative integer")
    return validate_piece_number(int(text))


def piece_path(task_id: str, number: int) -> str:
    return f"{API_PREFIX}/{validate_task_id(task_id)}/pieces/{validate_piece_number(number)}"


def bitmap_path(task_id: str) -> str:
    return f"{API_PREFIX}/{validate_task_id(task_id)}/bitmap"


def parse_retry_after(value: str | None, default: float = float(BUSY_RETRY_AFTER_SECONDS)) -> float:
    """``Retry-After`` in seconds (the delta form only; peers never send a date)."""
    if value is None or not value.strip().isdigit():
        return default
    return float(int(value.strip()))


# -- bitmaps --------------------------------------------------------------------------------------


def encode_bitmap(held: Iterable[int], piece_count: int) -> str:
    """Base64 of the bitmap of ``held``; ``ValueError`` for a number outside the task."""
    _check_piece_count(piece_count)
    numbers = list(held)
    outside = [n for n in numbers if not 0 <= n < piece_count]
    if outside:
        raise ValueError(f"piece {outside[0]} is outside a task of {piece_count} pieces")
    bitmap = PieceBitmap.of(piece_count, numbers)
    return base64.b64encode(bitmap.to_bytes()).decode("ascii")


def decode_bitmap(text: str, piece_count: int) -> frozenset[int]:
    """The pieces set in a bitmap from a peer; ``ProtocolError`` unless it is exactly right.

    The bit layout is ``protocol/bitmap.py``'s (the gRPC form); here it is base64, and the
    empty form that gRPC allows for "no piece" is refused."""
    _check_piece_count(piece_count)
    try:
        bits = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"bitmap: not valid base64 ({exc})") from exc
    expected = bitmap_length(piece_count)
    if len(bits) != expected:
        raise ProtocolError(
            f"bitmap: {len(bits)} bytes for {piece_count} pieces (expected {expected})"
        )
    bitmap = PieceBitmap(piece_count, int.from_bytes(bits, "big"))
    beyond = bitmap.bits & ~PieceBitmap.full(piece_count).bits
    if beyond:
        last = expected * 8 - (beyond & -beyond).bit_length()
        raise ProtocolError(f"bitmap: bit {last} set past the last piece ({piece_count})")
    return frozenset(bitmap.numbers())


def _check_piece_count(piece_count: int) -> None:
    if isinstance(piece_count, bool) or not isinstance(piece_count, int) or piece_count < 0:
        raise ProtocolError(f"piece count {piece_count!r}: expected a non-negative integer")


# -- bitmap documents and watch lines -----------------------------------------------------------


@dataclass(frozen=True)
class BitmapSnapshot:
    """What a parent holds of a task at one moment (the bitmap body; the first watch line)."""

    piece_count: int
    held: frozenset[int]


@dataclass(frozen=True)
class PieceHeld:
    """A watch line: the parent now holds ``number``."""

    number: int


@dataclass(frozen=True)
class TaskComplete:
    """The last watch line: the parent holds every piece."""


WatchEvent = BitmapSnapshot | PieceHeld | TaskComplete


def encode_snapshot(snapshot: BitmapSnapshot) -> bytes:
    held = encode_bitmap(snapshot.held, snapshot.piece_count)
    return json.dumps({"piece_count": snapshot.piece_count, "held": held}).encode()


def encode_watch_event(event: WatchEvent) -> bytes:
    """One NDJSON line (with its newline)."""
    if isinstance(event, BitmapSnapshot):
        return encode_snapshot(event) + b"\n"
    if isinstance(event, PieceHeld):
        return b'{"piece": %d}\n' % validate_piece_number(event.number)
    return b'{"complete": true}\n'


HEARTBEAT_LINE = b"\n"


def parse_snapshot(body: bytes | str, *, piece_count: int | None = None) -> BitmapSnapshot:
    """A bitmap body; with ``piece_count``, also check the parent agrees on the task's size."""
    document = _json_object(body)
    count = document.get("piece_count")
    held = document.get("held")
    if isinstance(count, bool) or not isinstance(count, int) or not isinstance(held, str):
        raise ProtocolError("bitmap: expected {piece_count: int, held: str}")
    if piece_count is not None and count != piece_count:
        raise ProtocolError(f"bitmap: parent says {count} pieces, expected {piece_count}")
    return BitmapSnapshot(count, decode_bitmap(held, count))


def parse_watch_line(line: bytes, piece_count: int) -> PieceHeld | TaskComplete | None:
    """A line after the first one; ``None`` for a heartbeat."""
    if not line.strip():
        return None
    document = _json_object(line)
    if document == {"complete": True}:
        return TaskComplete()
    number = document.get("piece")
    if isinstance(number, bool) or not isinstance(number, int) or len(document) != 1:
        raise ProtocolError(f"watch: unexpected line {line[:80]!r}")
    if not 0 <= number < piece_count:
        raise ProtocolError(f"watch: piece {number} is outside a task of {piece_count} pieces")
    return PieceHeld(number)


class WatchBatch(NamedTuple):
    """What a batch of watch lines says: the pieces, in order, then how the batch ended."""

    numbers: tuple[int, ...]
    complete: bool  # the stream's last line came (lines after it are not looked at)
    error: ProtocolError | None  # a line that is not a watch line (lines after it neither)


def parse_watch_lines(lines: list[bytes], piece_count: int) -> WatchBatch:
    """Lines after the first one (without their newlines)."""
    numbers = []
    for line in lines:
        match = _PIECE_LINE.fullmatch(line)  # what ``encode_watch_event`` writes: no JSON parse
        if match is not None and int(match[1]) < piece_count:
            numbers.append(int(match[1]))
            continue
        try:
            event = parse_watch_line(line, piece_count)
        except ProtocolError as exc:
            return WatchBatch(tuple(numbers), False, exc)
        if isinstance(event, TaskComplete):
            return WatchBatch(tuple(numbers), True, None)
        if event is not None:
            numbers.append(event.number)
    return WatchBatch(tuple(numbers), False, None)


def _json_object(body: bytes | str) -> dict[str, object]:
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise ProtocolError("expected a JSON object")
    return document
