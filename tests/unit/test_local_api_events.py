"""The local API's NDJSON events (codec) and the daemon's progress batching (``EventBuffer``)."""

from __future__ import annotations

import asyncio

import pytest

from damselfly.core.errors import ProtocolError
from damselfly.daemon.servers.event_stream import EventBuffer
from damselfly.protocol.local_api import (
    Failed,
    FileFinished,
    FileStarted,
    Progress,
    RunResult,
    decode_event,
    encode_event,
)


@pytest.mark.parametrize(
    "event",
    [
        FileStarted("a/b.bin", 10, 4),
        FileStarted("x", None, 0),
        Progress("a/b.bin", 6),
        FileFinished("a/b.bin"),
        RunResult(files=2, bytes=10, source_bytes=6, peer_bytes=0, reused_bytes=4, stdout="/p\n"),
        Failed("origin said 404", 1),
    ],
)
def test_events_round_trip_as_one_line(event):
    line = encode_event(event)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    decoded = decode_event(line)
    assert decoded == event
    assert type(decoded) is type(event)  # NamedTuples of equal fields compare equal


def test_wire_names_match_the_contract():
    assert encode_event(Failed("m", 2)) == b'{"event":"error","message":"m","exit_code":2}\n'
    assert encode_event(Progress("f", 3)) == b'{"event":"progress","name":"f","bytes":3}\n'


@pytest.mark.parametrize(
    "line",
    [
        b"{",
        b"[]",
        b'{"event":"nope"}',
        b'{"name":"f"}',
        b'{"event":"progress","name":"f"}',
        b'{"event":"progress","name":"f","bytes":-1}',
        b'{"event":"progress","name":"f","bytes":true}',
        b'{"event":"file_finished","name":7}',
        b'{"event":"error","message":"m","exit_code":"1"}',
    ],
)
def test_malformed_events_are_refused(line):
    with pytest.raises(ProtocolError):
        decode_event(line)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_is_batched_per_file_and_flushed_before_finish():
    clock = FakeClock()
    buffer = EventBuffer(interval=0.5, clock=clock)
    buffer.file_started("a", 30, 0)
    buffer.bytes_received("a", 5)
    buffer.bytes_received("a", 5)
    assert buffer.take() == [FileStarted("a", 30, 0)]  # 10 bytes pending, not due yet
    clock.now += 0.5
    buffer.bytes_received("a", 5)  # due: the three chunks go out as one event
    assert buffer.take() == [Progress("a", 15)]
    buffer.bytes_received("a", 7)
    buffer.file_finished("a")
    assert buffer.take() == [Progress("a", 7), FileFinished("a")]
    buffer.close(RunResult(1, 22, 22, 0))
    assert buffer.take() == [RunResult(1, 22, 22, 0)]
    assert buffer.done


def test_pending_progress_falls_due_without_new_bytes():
    clock = FakeClock()
    buffer = EventBuffer(interval=0.5, clock=clock)
    buffer.file_started("a", None, 0)
    buffer.take()
    buffer.bytes_received("a", 3)
    assert buffer.take() == []
    clock.now += 0.75
    assert buffer.take() == [Progress("a", 3)]


def test_close_sends_pending_bytes_of_every_file_then_the_final_event():
    buffer = EventBuffer(interval=10, clock=FakeClock())
    buffer.file_started("a", 4, 0)
    buffer.file_started("b", 4, 0)
    buffer.bytes_received("a", 1)
    buffer.bytes_received("b", 2)
    buffer.take()
    assert not buffer.done
    buffer.close(Failed("boom", 1))
    assert buffer.take() == [Progress("a", 1), Progress("b", 2), Failed("boom", 1)]
    assert buffer.done


async def test_wait_ready_wakes_on_an_event_and_times_out_for_pending_progress():
    buffer = EventBuffer(interval=0.05)
    waiter = asyncio.ensure_future(buffer.wait_ready())
    await asyncio.sleep(0)
    assert not waiter.done()  # nothing queued, nothing pending: waits without a timeout
    buffer.file_started("a", 1, 0)
    await asyncio.wait_for(waiter, 1)
    buffer.take()
    buffer.bytes_received("a", 1)  # just sent file_started: not due, but pending
    await asyncio.wait_for(buffer.wait_ready(), 1)  # returns after ~interval
