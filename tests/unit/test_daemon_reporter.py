"""PeerReporter against FakeSchedulerClient, its timer driven by ManualWait (no real sleeps)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from damselfly.core.errors import ProtocolError
from damselfly.daemon.engine.reporter import MAX_REPORT_PIECES, MAX_RETRY_DELAY, PeerReporter
from damselfly.protocol.messages import BadParentReason, Decision, PieceDigest, ReportAnswer
from damselfly.testing.fake_scheduler import FakeSchedulerClient, ManualWait
from damselfly.testing.polling import wait_until
from damselfly.transport.scheduler.api import SchedulerUnavailableError, UnknownHostError

TASK = hashlib.sha256(b"task").hexdigest()
PARENT = f"parent-host/{TASK}"
INTERVAL = 0.5


def digest(n: int) -> str:
    return "blake3:" + hashlib.sha256(str(n).encode()).hexdigest()


async def settle() -> None:
    """Let every ready task run until it blocks."""
    for _ in range(20):
        await asyncio.sleep(0)


class Harness:
    def __init__(self, *, rehome: bool = False, **options: Any) -> None:
        self.client = FakeSchedulerClient()
        self.timer = ManualWait()
        self.rehomes = 0
        self.answers: list[ReportAnswer] = []
        options.setdefault("origin_reader", False)
        self.reporter = PeerReporter(
            self.client, "me", TASK, interval=INTERVAL, max_batch=4, wait=self.timer,
            on_answer=self.answers.append, rehome=self.rehome if rehome else None, **options,
        )  # fmt: skip

    async def rehome(self) -> None:
        self.rehomes += 1

    async def tick(self) -> None:
        """One interval passes and the reporter does what it does then."""
        await wait_until(lambda: self.timer.waiting == 1)
        self.timer.elapse()
        await settle()
        await wait_until(lambda: self.timer.waiting == 1)


@pytest.fixture
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    options = getattr(request, "param", {})
    h = Harness(**options)
    runner = asyncio.create_task(h.reporter.run())
    await settle()
    yield h
    runner.cancel()
    await asyncio.gather(runner, return_exceptions=True)


async def test_a_full_batch_is_sent_at_once_without_waiting_for_the_interval(
    harness: Harness,
) -> None:
    for n in range(3):
        harness.reporter.piece_gained(n, digest(n))
    await settle()
    assert harness.client.reports == []
    harness.reporter.piece_gained(3, digest(3))
    await wait_until(lambda: len(harness.client.reports) == 1)
    report = harness.client.reports[0]
    assert (report.host_id, report.task_id, report.pieces) == ("me", TASK, (0, 1, 2, 3))
    assert (report.finished, report.failed, report.want_parents) == (False, False, False)
    assert harness.timer.asked == [INTERVAL, INTERVAL]  # no interval had to pass


async def test_a_partial_batch_waits_for_the_interval(harness: Harness) -> None:
    harness.reporter.piece_gained(7, digest(7))
    harness.reporter.piece_gained(7, digest(7))  # the same piece twice is one entry
    harness.reporter.piece_gained(2, digest(2))
    await settle()
    assert harness.client.reports == []
    await harness.tick()
    assert [r.pieces for r in harness.client.reports] == [(7, 2)]
    await harness.tick()  # nothing pending: nothing sent
    assert len(harness.client.reports) == 1


@pytest.mark.parametrize(
    ("harness", "expected"),
    [({"origin_reader": True}, (PieceDigest(0, digest(0)), PieceDigest(1, digest(1)))),
     ({"origin_reader": False}, ())],
    indirect=["harness"],
)  # fmt: skip
async def test_digests_are_sent_only_by_an_origin_reader(
    harness: Harness, expected: tuple[PieceDigest, ...]
) -> None:
    harness.reporter.piece_gained(0, digest(0))
    harness.reporter.piece_gained(1, digest(1))
    await harness.tick()
    [report] = harness.client.reports
    assert (report.pieces, report.digests) == ((0, 1), expected)


@pytest.mark.parametrize("harness", [{"origin_reader": True}], indirect=True)
async def test_an_origin_reader_reports_each_piece_at_once(harness: Harness) -> None:
    harness.reporter.piece_gained(5, digest(5))  # children wait for this digest
    await wait_until(lambda: len(harness.client.reports) == 1)
    harness.reporter.piece_gained(6, digest(6))
    await wait_until(lambda: len(harness.client.reports) == 2)
    assert [r.digests for r in harness.client.reports] == [
        (PieceDigest(5, digest(5)),),
        (PieceDigest(6, digest(6)),),
    ]
    assert harness.timer.asked == [INTERVAL] * 3  # no interval had to pass


async def test_unknown_host_rehomes_then_sends_the_same_batch_again() -> None:
    h = Harness(rehome=True)
    h.client.fail_next("report_peer", UnknownHostError("host me is not announced"))
    h.reporter.piece_gained(5, digest(5))
    async with asyncio.TaskGroup() as group:
        runner = group.create_task(h.reporter.run())
        await h.tick()
        runner.cancel()
    assert h.rehomes == 1
    assert h.client.calls == ["report_peer", "report_peer"]
    assert [r.pieces for _, r in h.client.failed_calls] == [(5,)]
    assert [r.pieces for r in h.client.reports] == [(5,)]
    assert h.reporter.pending_pieces == 0


async def test_unavailable_keeps_the_batch_and_backs_off(harness: Harness) -> None:
    harness.client.fail_next("report_peer", SchedulerUnavailableError("report", ["a: down"]))
    harness.reporter.piece_gained(0, "")
    harness.reporter.piece_gained(1, "")
    await harness.tick()
    assert harness.reporter.pending_pieces == 2
    for n in range(2, 8):  # a full batch does not hammer a down scheduler
        harness.reporter.piece_gained(n, "")
    await settle()
    assert harness.client.calls == ["report_peer"]
    assert harness.timer.asked[-1] == 2 * INTERVAL
    await harness.tick()
    assert [r.pieces for r in harness.client.reports] == [(0, 1, 2, 3, 4, 5, 6, 7)]
    assert harness.timer.asked[-1] == INTERVAL  # back to the normal interval
    assert harness.reporter.pending_pieces == 0


async def test_the_retry_delay_is_capped(harness: Harness) -> None:
    harness.client.fail_next("report_peer", SchedulerUnavailableError("report", []), times=8)
    harness.reporter.piece_gained(0, "")
    for _ in range(8):
        await harness.tick()
    assert harness.timer.asked[-1] == MAX_RETRY_DELAY
    assert harness.reporter.pending_pieces == 1


async def test_unknown_host_without_rehome_keeps_the_batch(harness: Harness) -> None:
    harness.client.fail_next("report_peer", UnknownHostError("peer is not registered"))
    harness.reporter.piece_gained(3, "")
    await harness.tick()
    assert harness.reporter.pending_pieces == 1
    await harness.tick()
    assert harness.client.calls == ["report_peer", "report_peer"]
    assert [r.pieces for r in harness.client.reports] == [(3,)]
    assert harness.reporter.pending_pieces == 0


async def test_a_refused_batch_is_dropped(harness: Harness) -> None:
    harness.client.fail_next("report_peer", ProtocolError("piece 9 out of range"))
    harness.reporter.piece_gained(9, "")
    await harness.tick()
    assert harness.reporter.pending_pieces == 0
    await harness.tick()
    assert harness.client.calls == ["report_peer"]


async def test_bad_parents_go_with_the_next_report(harness: Harness) -> None:
    harness.reporter.parent_failed(PARENT, BadParentReason.DIGEST, "piece 3 failed")
    harness.reporter.parent_failed("not a peer id", BadParentReason.TIMEOUT)  # logged, dropped
    await harness.tick()
    [report] = harness.client.reports
    assert [(b.peer_id, b.reason, b.detail) for b in report.bad_parents] == [
        (PARENT, BadParentReason.DIGEST, "piece 3 failed")
    ]


async def test_ask_for_parents_sends_the_pending_batch_now(harness: Harness) -> None:
    harness.client.answers.append(ReportAnswer(Decision.BACK_TO_SOURCE, ()))
    harness.reporter.piece_gained(0, digest(0))
    answer = await harness.reporter.ask_for_parents()
    assert answer.decision is Decision.BACK_TO_SOURCE
    [report] = harness.client.reports
    assert (report.pieces, report.digests, report.want_parents) == ((0,), (), True)
    assert harness.reporter.origin_reader  # told to read the origin: now it reports digests
    harness.reporter.piece_gained(1, digest(1))
    await harness.tick()
    assert harness.client.reports[-1].digests == (PieceDigest(1, digest(1)),)
    assert harness.answers == []  # ask_for_parents returns its answer; on_answer is not called


async def test_want_parents_nowait_hands_the_answer_to_on_answer(harness: Harness) -> None:
    harness.client.answers.append(ReportAnswer(Decision.WAIT_FOR_SEED, ()))
    harness.reporter.want_parents_nowait()
    await wait_until(lambda: len(harness.answers) == 1)
    assert harness.answers == [ReportAnswer(Decision.WAIT_FOR_SEED, ())]
    assert harness.client.reports[0].want_parents


async def test_ask_for_parents_raises_when_no_scheduler_answers(harness: Harness) -> None:
    harness.client.fail_next("report_peer", SchedulerUnavailableError("report", ["a: down"]))
    harness.reporter.piece_gained(4, "")
    with pytest.raises(SchedulerUnavailableError):
        await harness.reporter.ask_for_parents()
    assert harness.reporter.pending_pieces == 1


async def test_finish_sends_everything_pending_and_stops_the_loop() -> None:
    h = Harness()
    runner = asyncio.create_task(h.reporter.run())
    h.reporter.piece_gained(0, "")
    await h.reporter.finish()
    await asyncio.wait_for(runner, 1)
    [report] = h.client.reports
    assert (report.pieces, report.finished, report.failed) == ((0,), True, False)
    h.reporter.piece_gained(1, "")  # ignored after finish
    await h.reporter.finish()  # idempotent
    assert len(h.client.reports) == 1


async def test_finish_failed_never_raises() -> None:
    h = Harness()
    h.client.fail_next("report_peer", SchedulerUnavailableError("report", ["a: down"]))
    await h.reporter.finish(failed=True, reason="x" * 2000)
    [(_, report)] = h.client.failed_calls
    assert (report.failed, len(report.failure_reason)) == (True, 512)


async def test_a_long_backlog_is_sent_in_parts_with_the_flags_on_the_last() -> None:
    h = Harness()
    for n in range(MAX_REPORT_PIECES + 10):
        h.reporter.piece_gained(n, "")
    await h.reporter.finish()
    assert [len(r.pieces) for r in h.client.reports] == [MAX_REPORT_PIECES, 10]
    assert [r.finished for r in h.client.reports] == [False, True]
    assert h.client.reported_pieces == list(range(MAX_REPORT_PIECES + 10))
