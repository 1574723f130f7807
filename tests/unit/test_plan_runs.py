import pytest

from damselfly.download.source_fetcher import FetchPolicy, plan_runs

MiB = 1024 * 1024


@pytest.mark.parametrize(
    ("missing", "concurrency", "max_request", "runs"),
    [
        ([], 8, 32 * MiB, []),
        ([0], 8, 32 * MiB, [[0]]),
        # plenty of pieces: capped by bytes per request (32 MiB / 4 MiB = 8 pieces)
        (list(range(256)), 8, 32 * MiB, [list(range(i, i + 8)) for i in range(0, 256, 8)]),
        # few pieces: at least two runs per worker, so the tail stays balanced
        (list(range(8)), 2, 32 * MiB, [[0, 1], [2, 3], [4, 5], [6, 7]]),
        # gaps (pieces already held) split runs
        ([0, 1, 2, 5, 6, 9], 1, 32 * MiB, [[0, 1, 2], [5, 6], [9]]),
        # a request never covers more than one piece if pieces exceed the request length
        ([0, 1, 2], 1, 1 * MiB, [[0], [1], [2]]),
    ],
)
def test_plan_runs(missing, concurrency, max_request, runs):
    policy = FetchPolicy(concurrency=concurrency, max_request_length=max_request)
    assert list(plan_runs(missing, 4 * MiB, policy)) == runs
