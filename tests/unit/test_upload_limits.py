"""Upload slots and the shared token bucket, on a fake clock (no timing asserts; `paced` sleeps
at most 10 ms once)."""

from __future__ import annotations

import asyncio

import pytest

from damselfly.daemon.servers.upload_limits import TokenBucket, UploadSlots, paced


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_slots_refuse_beyond_the_limit_and_free_on_release() -> None:
    slots = UploadSlots(2)
    assert [slots.try_acquire() for _ in range(3)] == [True, True, False]
    assert slots.in_use == 2
    slots.release()
    assert slots.try_acquire()
    slots.release()
    slots.release()
    assert slots.in_use == 0
    with pytest.raises(RuntimeError):
        slots.release()


def test_bucket_delays_follow_the_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst_bytes=1000, clock=clock)
    assert bucket.reserve(1000) == 0.0  # the burst
    assert bucket.reserve(500) == pytest.approx(0.5)
    assert bucket.reserve(500) == pytest.approx(1.0)  # queued behind the first reservation
    clock.advance(1.0)
    assert bucket.level == pytest.approx(0.0)
    assert bucket.reserve(100) == pytest.approx(0.1)


def test_bucket_shared_by_many_uploads_keeps_the_long_run_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1_000_000, burst_bytes=100_000, clock=clock)
    # 4 uploads x 25 chunks of 64 KiB, interleaved, each sleeping its delay before the next
    sent, finish = 0, 0.0
    for _ in range(25):
        for _ in range(4):
            delay = bucket.reserve(65536)
            sent += 65536
            finish = max(finish, clock.now + delay)
    elapsed = finish - 100.0
    assert elapsed == pytest.approx((sent - 100_000) / 1_000_000)


def test_bucket_refills_only_up_to_the_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, burst_bytes=2000, clock=clock)
    bucket.reserve(2000)
    clock.advance(3600)
    assert bucket.level == 2000
    assert bucket.reserve(2000) == 0.0
    assert bucket.reserve(1) == pytest.approx(0.001)


def test_bucket_default_burst_and_bad_arguments() -> None:
    assert TokenBucket(4_000_000).burst == 1_000_000
    assert TokenBucket(1000).burst == 64 * 1024
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(10, burst_bytes=0)
    with pytest.raises(ValueError, match="reserve"):
        TokenBucket(10).reserve(-1)
    with pytest.raises(ValueError, match="slots"):
        UploadSlots(0)


async def test_a_cancelled_wait_gives_its_bytes_back() -> None:
    """A child that goes away (or a stopped twin) while its chunk waits for the limit: the
    chunk was never sent, so the next upload must not wait for it."""
    clock = FakeClock()  # never advanced: only the refund can raise the level
    bucket = TokenBucket(1000, burst_bytes=100, clock=clock)
    waiting = asyncio.ensure_future(paced(bucket, 1000))  # 0.9 s of debt
    await asyncio.sleep(0)
    assert bucket.level == pytest.approx(-900)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert bucket.level == pytest.approx(100)  # back to the burst, not above it
    assert bucket.reserve(50) == 0.0


async def test_a_wait_that_ends_keeps_its_bytes_charged() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100_000, burst_bytes=100, clock=clock)
    await paced(bucket, 1100)  # 10 ms of debt, waited out in real time
    assert bucket.level == pytest.approx(-1000)  # the fake clock did not move: still charged
