"""100,000 fake registrations from one client against a scheduler process (issue 11, item 4).

The run is ``damselfly.testing.registration_flood`` (the suite's ``tests/e2e/test_floods.py``
runs the same at the same size and asserts on it): a scheduler over mTLS with its default
caps; one rogue certificate announces ``--hosts`` hosts and registers ``--tasks`` tasks
(``--processes`` worker processes, ``--in-flight`` calls at once each); a real peer with its
own certificate announces and registers during the tasks flood and after it. Prints the
outcomes, the scheduler's host/task/peer counts and its memory (VmRSS, peak VmHWM).
``--uncapped`` lifts the per-client caps and the host TTL (what the caps save).

    .venv/bin/python bench/security/registration_flood.py --hosts 100000 --tasks 100000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

from damselfly.testing.registration_flood import run_registration_flood

UNCAPPED = {
    "DAMSELFLY_SCHEDULER_CAPS__MAX_HOSTS": "1000000",
    "DAMSELFLY_SCHEDULER_CAPS__MAX_HOSTS_PER_CLIENT": "1000000",
    "DAMSELFLY_SCHEDULER_CAPS__HOST_REGISTRATIONS_PER_SECOND": "1000000000",
    "DAMSELFLY_SCHEDULER_CAPS__HOST_REGISTRATION_BURST": "1000000",
    "DAMSELFLY_SCHEDULER_CAPS__MAX_PEERS_PER_HOST": "1000000",
    "DAMSELFLY_SCHEDULER_HOST_TTL": "600",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--in-flight", type=int, default=500)
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--uncapped", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="regflood-") as root:
        outcome = asyncio.run(
            run_registration_flood(
                Path(root), hosts=args.hosts, tasks=args.tasks, in_flight=args.in_flight,
                processes=args.processes, scheduler_env=UNCAPPED if args.uncapped else None,
            )
        )  # fmt: skip
    print(f"rogue: {args.processes} processes x {args.in_flight} calls in flight; "
          f"{args.hosts} hosts + {args.tasks} tasks in {outcome.seconds:.1f} s")  # fmt: skip
    print(f"rogue host announcements: {dict(outcome.host_codes)}")
    print(f"rogue task registrations: {dict(outcome.task_codes)}")
    print(f"scheduler holds: {outcome.holds}; VmRSS {outcome.rss_kib // 1024} MiB, "
          f"peak {outcome.peak_rss_kib // 1024} MiB; {outcome.log_lines} log lines")  # fmt: skip
    print(f"real peer during the flood: {outcome.real_during} "
          f"({outcome.real_during_seconds:.2f} s); after: {outcome.real_after}")  # fmt: skip
    return 0 if outcome.real_during == outcome.real_after == "OK" else 1


if __name__ == "__main__":
    sys.exit(main())
