"""SchedulerFailover: which scheduler a task's calls go to, and what failures and answers
change; a fake clock, no I/O."""

from __future__ import annotations

import pytest

from damselfly.core.errors import ConfigError
from damselfly.protocol.rendezvous import rendezvous_order
from damselfly.transport.scheduler.failover import SchedulerFailover

ADDRESSES = ["10.0.0.1:8002", "10.0.0.2:8002", "10.0.0.3:8002"]
TASK = "task-0"
RETRY = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def failover(clock: Clock) -> SchedulerFailover:
    return SchedulerFailover(ADDRESSES, retry_down_after=RETRY, clock=clock)


def test_a_task_goes_to_its_rendezvous_order_while_every_scheduler_is_live(
    failover: SchedulerFailover,
) -> None:
    for key in ("a", "b", "c", TASK):
        assert failover.order_for(key) == rendezvous_order(key, ADDRESSES)
        assert failover.first_live(key) == rendezvous_order(key, ADDRESSES)[0]


def test_a_failed_scheduler_moves_to_the_end_until_retry_down_after_passed(
    failover: SchedulerFailover, clock: Clock
) -> None:
    first, second, third = rendezvous_order(TASK, ADDRESSES)
    failover.call_failed(first)
    assert failover.is_down(first)
    assert failover.order_for(TASK) == [second, third, first]
    clock.now += RETRY - 0.01
    assert failover.first_live(TASK) == second
    clock.now += 0.02
    assert not failover.is_down(first)
    assert failover.order_for(TASK) == [first, second, third]


def test_an_answer_makes_a_scheduler_live_again_at_once(failover: SchedulerFailover) -> None:
    first = rendezvous_order(TASK, ADDRESSES)[0]
    failover.call_failed(first)
    failover.call_answered(first)
    assert not failover.is_down(first)
    assert failover.first_live(TASK) == first


def test_when_all_are_down_every_address_is_still_in_the_order(
    failover: SchedulerFailover,
) -> None:
    order = rendezvous_order(TASK, ADDRESSES)
    for address in reversed(order):
        failover.call_failed(address)
    assert failover.order_for(TASK) == order  # down ones keep their rendezvous order
    assert failover.first_live(TASK, skip=order[:2]) == order[2]
    assert failover.first_live(TASK, skip=order) is None


def test_the_generation_counts_new_connections(failover: SchedulerFailover) -> None:
    address = ADDRESSES[0]
    assert failover.generation(address) == 0
    failover.connection_changed(address, was_ready=False, ready=True)  # connected
    failover.call_answered(address)  # over the connection already counted
    assert failover.generation(address) == 1
    failover.connection_changed(address, was_ready=True, ready=False)  # lost
    failover.connection_changed(address, was_ready=False, ready=True)  # back
    assert failover.generation(address) == 2
    failover.connection_changed(address, was_ready=True, ready=True)  # reconnected unseen
    assert failover.generation(address) == 3


def test_an_answer_before_the_watcher_saw_the_connection_counts_it_once(
    failover: SchedulerFailover,
) -> None:
    address = ADDRESSES[1]
    failover.call_answered(address)
    assert failover.generation(address) == 1
    failover.connection_changed(address, was_ready=False, ready=True)  # the watcher, late
    assert failover.generation(address) == 1


def test_a_failure_means_the_next_answer_comes_over_a_new_connection(
    failover: SchedulerFailover,
) -> None:
    address = ADDRESSES[2]
    failover.call_answered(address)
    failover.call_failed(address)
    failover.call_answered(address)
    assert failover.generation(address) == 2


def test_duplicate_addresses_count_once_and_none_is_a_config_error(clock: Clock) -> None:
    failover = SchedulerFailover([*ADDRESSES, ADDRESSES[0]], clock=clock)
    assert failover.addresses == tuple(ADDRESSES)
    with pytest.raises(ConfigError):
        SchedulerFailover([], clock=clock)
