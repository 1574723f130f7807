"""The origin as the benchmark sees it: one process in the origin namespace, and its counters.

Two counts of what the origin sent: ``bytes`` (HTTP body bytes, counted by the server itself,
``origin_server.py``) and ``wire_bytes`` (what the origin's veth carried, headers and TCP/IP
overhead included: the bridge end's ``rx_bytes``). Runs take differences of both.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.common.measure import stop_process, tail
from bench.common.workspace import BenchError, process_cpu_seconds
from bench.swarm.netns import Host, interface_counter

ORIGIN_PORT = 8080
SERVER_SCRIPT = Path(__file__).with_name("origin_server.py")


@dataclass(frozen=True)
class OriginStats:
    bytes: int  # HTTP body bytes sent
    requests: int
    wire_bytes: int  # bytes on the origin's link, all overhead included
    cpu_seconds: float
    first_send: float | None = None  # time.time() the body counter was first seen to grow
    last_send: float | None = None  # ... and last, since the previous reading

    def __sub__(self, earlier: OriginStats) -> OriginStats:
        """What happened between ``earlier`` and this reading (the window is this one's)."""
        return OriginStats(
            self.bytes - earlier.bytes,
            self.requests - earlier.requests,
            self.wire_bytes - earlier.wire_bytes,
            self.cpu_seconds - earlier.cpu_seconds,
            self.first_send,
            self.last_send,
        )


class Origin:
    def __init__(self, process: subprocess.Popen[str], host: Host, log: Path) -> None:
        self._process = process
        self._host = host
        self._log = log
        self.base_url = f"http://{host.ip}:{ORIGIN_PORT}"

    @property
    def pid(self) -> int:
        return self._process.pid

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"

    def stats(self) -> OriginStats:
        assert self._process.stdin is not None
        assert self._process.stdout is not None
        self._process.stdin.write("stats\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise BenchError(f"the origin stopped: {tail(self._log)}")
        answer = json.loads(line)
        return OriginStats(
            bytes=int(answer["bytes"]),
            requests=int(answer["requests"]),
            wire_bytes=interface_counter(self._host.veth, "rx_bytes"),
            cpu_seconds=process_cpu_seconds(self.pid),
            first_send=answer.get("first_send"),
            last_send=answer.get("last_send"),
        )


@contextlib.contextmanager
def origin_process(host: Host, root: Path, log: Path, env: Mapping[str, str]) -> Iterator[Origin]:
    """Serve ``root`` from the origin namespace until the block ends."""
    argv = [sys.executable, str(SERVER_SCRIPT), "--root", str(root)]
    argv += ["--host", host.ip, "--port", str(ORIGIN_PORT)]
    with log.open("ab") as sink:
        process = subprocess.Popen(
            host.argv(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=sink,
            text=True,
            env=dict(env),
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # the origin prints it once it listens
        if "serving" not in banner:
            raise BenchError(f"the origin did not start: {banner.strip()} {tail(log)}")
        yield Origin(process, host, log)
    finally:
        if process.stdin is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
