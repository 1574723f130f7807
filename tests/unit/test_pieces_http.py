"""The piece-transfer wire: paths, ids, numbers, bitmaps, bitmap documents and watch lines."""

from __future__ import annotations

import base64
import json

import pytest

from damselfly.core.errors import ProtocolError
from damselfly.protocol import pieces_http as wire
from damselfly.storage.content import TASK_ID_RE

TASK_ID = "ab" * 32


def test_task_id_rule_matches_the_store() -> None:
    assert TASK_ID_RE.pattern == wire.TASK_ID_PATTERN


def test_paths() -> None:
    assert wire.piece_path(TASK_ID, 7) == f"/v1/tasks/{TASK_ID}/pieces/7"
    assert wire.bitmap_path(TASK_ID) == f"/v1/tasks/{TASK_ID}/bitmap"


@pytest.mark.parametrize("task_id", ["", "a", "../etc", "a/b", "-ab", "a" * 129, "ab cd", "é1"])
def test_bad_task_ids_are_refused(task_id: str) -> None:
    with pytest.raises(ProtocolError):
        wire.validate_task_id(task_id)
    with pytest.raises(ProtocolError):
        wire.bitmap_path(task_id)


@pytest.mark.parametrize(("text", "number"), [("0", 0), ("7", 7), ("2147483647", 2**31 - 1)])
def test_piece_numbers_parse(text: str, number: int) -> None:
    assert wire.parse_piece_number(text) == number


@pytest.mark.parametrize("text", ["", "-1", "+1", "01", "1.0", "1e3", "2147483648", "٣", "0x1"])
def test_bad_piece_numbers_are_refused(text: str) -> None:
    with pytest.raises(ProtocolError):
        wire.parse_piece_number(text)


@pytest.mark.parametrize("number", [-1, 2**31, True])
def test_piece_path_refuses_bad_numbers(number: int) -> None:
    with pytest.raises(ProtocolError):
        wire.piece_path(TASK_ID, number)


# -- bitmaps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("held", "piece_count", "raw"),
    [
        ((), 0, b""),
        ((), 3, b"\x00"),
        ((0,), 1, b"\x80"),
        ((0, 7), 8, b"\x81"),
        ((1, 8), 9, b"\x40\x80"),
        ((0, 1, 2, 3, 4, 5, 6, 7, 8, 9), 10, b"\xff\xc0"),
    ],
)
def test_bitmap_bits_are_msb_first(held: tuple[int, ...], piece_count: int, raw: bytes) -> None:
    text = wire.encode_bitmap(held, piece_count)
    assert base64.b64decode(text) == raw
    assert wire.decode_bitmap(text, piece_count) == frozenset(held)


def test_bitmap_round_trip_of_a_large_task() -> None:
    held = frozenset(range(0, 2049, 3))
    assert wire.decode_bitmap(wire.encode_bitmap(held, 2049), 2049) == held


def test_encode_refuses_numbers_outside_the_task() -> None:
    with pytest.raises(ValueError, match="outside"):
        wire.encode_bitmap([3], 3)
    with pytest.raises(ValueError, match="outside"):
        wire.encode_bitmap([-1], 3)


@pytest.mark.parametrize(
    ("text", "piece_count", "match"),
    [
        (base64.b64encode(b"\x00\x00").decode(), 8, "2 bytes for 8 pieces"),
        (base64.b64encode(b"").decode(), 1, "0 bytes for 1 pieces"),
        (base64.b64encode(b"\x01").decode(), 7, "bit 7 set past the last piece"),
        (base64.b64encode(b"\x80\x20").decode(), 10, "bit 10 set past"),
        ("not base64!", 8, "base64"),
        ("gA", 8, "base64"),  # missing padding
    ],
)
def test_decode_refuses_malformed_bitmaps(text: str, piece_count: int, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        wire.decode_bitmap(text, piece_count)


def test_decode_refuses_a_negative_piece_count() -> None:
    with pytest.raises(ProtocolError):
        wire.decode_bitmap("", -1)


# -- documents and watch lines --------------------------------------------------------------------


def test_snapshot_round_trip() -> None:
    snapshot = wire.BitmapSnapshot(10, frozenset({0, 9}))
    body = wire.encode_snapshot(snapshot)
    assert json.loads(body) == {"piece_count": 10, "held": base64.b64encode(b"\x80\x40").decode()}
    assert wire.parse_snapshot(body) == snapshot
    assert wire.parse_snapshot(body, piece_count=10) == snapshot


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b"{}",
        b'{"piece_count": "3", "held": "AA=="}',
        b'{"piece_count": true, "held": "AA=="}',
        b'{"piece_count": 3, "held": 0}',
        b"{not json",
        b"\xff\xfe",
    ],
)
def test_malformed_snapshots_are_refused(body: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.parse_snapshot(body)


def test_snapshot_with_another_piece_count_is_refused() -> None:
    body = wire.encode_snapshot(wire.BitmapSnapshot(8, frozenset()))
    with pytest.raises(ProtocolError, match="parent says 8 pieces, expected 9"):
        wire.parse_snapshot(body, piece_count=9)


def test_watch_lines_round_trip() -> None:
    assert wire.encode_watch_event(wire.PieceHeld(5)) == b'{"piece": 5}\n'
    assert wire.encode_watch_event(wire.TaskComplete()) == b'{"complete": true}\n'
    first = wire.encode_watch_event(wire.BitmapSnapshot(3, frozenset({1})))
    assert first.endswith(b"\n")
    assert wire.parse_snapshot(first) == wire.BitmapSnapshot(3, frozenset({1}))
    assert wire.parse_watch_line(b'{"piece": 5}\n', 6) == wire.PieceHeld(5)
    assert wire.parse_watch_line(b'{"complete": true}\n', 6) == wire.TaskComplete()
    assert wire.parse_watch_line(wire.HEARTBEAT_LINE, 6) is None


@pytest.mark.parametrize(
    "line",
    [
        b'{"piece": 6}\n',
        b'{"piece": -1}\n',
        b'{"piece": true}\n',
        b'{"piece": 1, "extra": 2}\n',
        b'{"complete": false}\n',
        b"[1]\n",
        b"piece 1\n",
    ],
)
def test_malformed_watch_lines_are_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        wire.parse_watch_line(line, 6)


@pytest.mark.parametrize(
    ("value", "seconds"), [(None, 1.0), ("3", 3.0), (" 0 ", 0.0), ("soon", 1.0), ("-2", 1.0)]
)
def test_retry_after(value: str | None, seconds: float) -> None:
    assert wire.parse_retry_after(value) == seconds


WATCH_LINES = [
    b'{"piece": 0}',
    b'{"piece": 5}',
    b'{"piece":5}',
    b'{ "piece" : 5 }',
    b'{"piece": 6}',
    b'{"piece": 05}',
    b'{"piece": 99999999999}',
    b'{"piece": -1}',
    b'{"piece": true}',
    b'{"piece": 1, "extra": 2}',
    b'{"complete": false}',
    b"",
    b"  ",
    b"[1]",
    b"piece 1",
]


@pytest.mark.parametrize("line", WATCH_LINES)
def test_watch_lines_in_a_batch_read_as_one_at_a_time(line: bytes) -> None:
    batch = wire.parse_watch_lines([b'{"piece": 2}', line, b'{"piece": 3}'], 6)
    if batch.error is not None:
        with pytest.raises(ProtocolError) as alone:
            wire.parse_watch_line(line, 6)
        assert str(batch.error) == str(alone.value)
        assert batch.numbers == (2,)  # the lines before it count, none after
        return
    event = wire.parse_watch_line(line, 6)
    numbers = (event.number,) if isinstance(event, wire.PieceHeld) else ()
    assert wire.parse_watch_lines([line], 6) == (numbers, False, None)


def test_a_batch_is_read_in_order_up_to_the_end_of_the_stream() -> None:
    lines = [b'{"piece": 3}', b"", b'{"piece":1}', b'{"complete": true}', b"not looked at"]
    assert wire.parse_watch_lines(lines, 6) == ((3, 1), True, None)
    assert wire.parse_watch_lines(lines[:3], 6) == ((3, 1), False, None)
