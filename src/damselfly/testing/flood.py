"""Idle TCP connections by the thousand, as the piece-port attack of issue 11 opened them.

``open_idle_connections((host, port), count)`` starts ``count`` non-blocking connects from
``source_ip`` (another loopback address, so the victim tells the flood apart from real peers
by IP address) and returns the sockets: they never send a byte. Raises the soft limit of open
files first. ``python -m damselfly.testing.flood HOST PORT COUNT`` holds them until its stdin
closes (the bench runs several such processes: one process cannot hold 20,000 sockets under
a hard limit of 20,000 files).
"""

from __future__ import annotations

import errno
import resource
import socket
import sys

FLOOD_SOURCE_IP = "127.0.0.2"


def raise_open_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def open_idle_connections(
    address: tuple[str, int], count: int, *, source_ip: str = FLOOD_SOURCE_IP
) -> list[socket.socket]:
    raise_open_file_limit(count + 512)
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.bind((source_ip, 0))
        code = sock.connect_ex(address)
        if code not in (0, errno.EINPROGRESS):
            sock.close()
            raise OSError(code, f"connect to {address}: {errno.errorcode.get(code, code)}")
        sockets.append(sock)
    return sockets


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def main(argv: list[str]) -> int:
    host, port, count = argv[0], int(argv[1]), int(argv[2])
    sockets = open_idle_connections((host, port), count)
    sys.stdout.write(f"flood open: {len(sockets)}\n")
    sys.stdout.flush()
    sys.stdin.read()  # until the parent closes our stdin
    close_all(sockets)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
