"""Seed choice by rendezvous hashing, seed job queues, and the origin-reader digest book."""

from __future__ import annotations

import hashlib
import logging

import pytest

from damselfly.protocol.messages import PieceDigest, TaskMeta
from damselfly.scheduler.digests import DigestOffer, TaskDigests
from damselfly.scheduler.seeds import SeedJob, SeedPool

TASK_IDS = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(300)]


def digest(n: int) -> str:
    return "blake3:" + hashlib.sha256(str(n).encode()).hexdigest()


def job(i: int) -> SeedJob:
    return SeedJob(TaskMeta(TASK_IDS[i], "https://o/x", 1 << 20, 1 << 16))


def pool_of(*seeds: str) -> SeedPool:
    pool = SeedPool()
    for seed in seeds:
        pool.seed_connected(seed)
    return pool


# Seeds -----------------------------------------------------------------------------------


def test_seed_choice_is_stable_and_spread() -> None:
    pool = pool_of("s1", "s2", "s3")
    first = {t: pool.choose(t) for t in TASK_IDS}
    again = pool_of("s3", "s1", "s2")
    assert {t: again.choose(t) for t in TASK_IDS} == first
    counts = {s: list(first.values()).count(s) for s in ("s1", "s2", "s3")}
    assert all(60 < n < 140 for n in counts.values()), counts


def test_a_leaving_seed_moves_only_its_own_tasks() -> None:
    pool = pool_of("s1", "s2", "s3")
    before = {t: pool.choose(t) for t in TASK_IDS}
    pool.seed_disconnected("s2")
    after = {t: pool.choose(t) for t in TASK_IDS}
    moved = {t for t in TASK_IDS if before[t] != after[t]}
    assert moved == {t for t in TASK_IDS if before[t] == "s2"}
    assert "s2" not in after.values()


def test_choice_among_eligible_seeds_only() -> None:
    pool = pool_of("s1", "s2")
    assert pool.choose(TASK_IDS[0], eligible=[]) is None
    assert pool.choose(TASK_IDS[0], eligible=["s2", "not-connected"]) == "s2"
    assert SeedPool().choose(TASK_IDS[0]) is None


def test_job_queue_is_fifo_and_drained_once() -> None:
    pool = pool_of("s1")
    pool.job_queued("s1", job(0))
    pool.job_queued("s1", job(1))
    assert pool.with_pending_jobs() == ["s1"]
    assert pool.take_jobs("s1") == [job(0), job(1)]
    assert pool.take_jobs("s1") == []
    assert pool.pending("s1") == 0


def test_disconnect_returns_undelivered_jobs_after_the_last_stream() -> None:
    pool = pool_of("s1", "s1")  # a reconnect overlapping the old stream
    pool.job_queued("s1", job(0))
    assert pool.seed_disconnected("s1") == []  # one stream still open
    assert pool.connected == {"s1"}
    assert pool.seed_disconnected("s1") == [job(0)]
    assert pool.connected == frozenset()


# Digests ---------------------------------------------------------------------------------


def test_digests_from_a_non_origin_reader_are_ignored() -> None:
    book = TaskDigests("t" * 64, 4)
    book.reader_chosen("seed")
    assert book.offered("peer", [PieceDigest(0, digest(0))]) == DigestOffer(ignored=1)
    assert book.get(0) is None
    assert book.offered("seed", [PieceDigest(0, digest(0))]) == DigestOffer(accepted=1)
    assert book.get(0) == digest(0)


def test_first_digest_wins_and_conflicts_are_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    book = TaskDigests("t" * 64, 4)
    book.reader_chosen("r1")
    book.reader_chosen("r2")
    book.offered("r1", [PieceDigest(0, digest(0)), PieceDigest(1, digest(1))])
    with caplog.at_level(logging.WARNING, logger="damselfly.scheduler.digests"):
        offer = book.offered("r2", [PieceDigest(0, digest(99)), PieceDigest(1, digest(1))])
    assert offer == DigestOffer(accepted=0, conflicts=(0,))
    assert book.get(0) == digest(0)
    assert "conflicting piece digests from r2" in caplog.text


def test_digest_pages_are_ascending_and_truncated() -> None:
    book = TaskDigests("t" * 64, 10)
    book.reader_chosen("r")
    book.offered("r", [PieceDigest(n, digest(n)) for n in (7, 1, 4, 9)])
    assert book.page(0, 2) == ((PieceDigest(1, digest(1)), PieceDigest(4, digest(4))), True)
    assert book.page(5, 10) == ((PieceDigest(7, digest(7)), PieceDigest(9, digest(9))), False)
    assert book.page(10, 10) == ((), False)


def test_restored_reader_only_when_the_task_never_had_one() -> None:
    fresh = TaskDigests("t" * 64, 4)  # as after a scheduler restart
    assert fresh.restored("seed", [PieceDigest(0, digest(0))]) == DigestOffer(accepted=1)
    assert fresh.is_reader("seed")
    assert fresh.restored("liar", [PieceDigest(1, digest(1))]) == DigestOffer(ignored=1)
    known = TaskDigests("t" * 64, 4)
    known.reader_chosen("seed")
    known.reader_gone("seed")
    assert known.restored("liar", [PieceDigest(0, digest(0))]) == DigestOffer(ignored=1)
