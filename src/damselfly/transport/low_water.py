"""``SO_RCVLOWAT`` for piece bodies: how many bytes a reader waits for before the socket
wakes it (fewer, larger reads), for the plain reader (``piece_wire.py``) and the TLS reader
threads (``piece_wire_threads.py``)."""

from __future__ import annotations

import contextlib
import socket

# Wake the reader of a body once this many bytes wait (or fewer, ``low_water``)
LOW_WATER = 256 * 1024
# ... and never more than the connection's last rate brings in this share of the patience,
# so bytes that wait unseen in the kernel cannot make a slowed parent look stalled
_PATIENCE_SHARE = 1 / 64
# ... and never more than this share of the socket's receive buffer: a mark the window
# cannot hold makes Linux grow the buffer and clamp the TCP window to the mark
_BUFFER_SHARE = 4


def low_water(rest: int, rate: float | None, patience: float, buffer: int = 0) -> int:
    """How many bytes to wait for before reading a body's next bytes: ``LOW_WATER``, at most
    ``rest`` (the bytes still to come: more would never arrive), at most what the last
    measured ``rate`` (bytes/s; None: not measured yet, wait for nothing) brings in a 64th
    of ``patience`` (a parent whose rate falls 64-fold is still not taken as stalled) and,
    when ``buffer`` (the socket's ``SO_RCVBUF``, 0: unknown) is known, at most a quarter of
    it (half of it is the TCP window; the mark stays well inside)."""
    if rate is None:
        return 1
    mark = min(rest, LOW_WATER, int(rate * patience * _PATIENCE_SHARE))
    if buffer > 0:
        mark = min(mark, buffer // _BUFFER_SHARE)
    return max(1, mark)


def receive_buffer(sock: socket.socket | None) -> int:
    """The socket's receive buffer in bytes as the kernel reports it (autotuning grows it
    as the connection runs); 0 when it cannot be read."""
    if sock is None:
        return 0
    try:
        return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    except OSError:
        return 0


def set_low_water(sock: socket.socket | None, count: int) -> None:
    """``SO_RCVLOWAT``: the socket reads as readable once ``count`` bytes wait (or at the
    end of the stream). Never more than what is still to come, or the last bytes wait."""
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, max(1, count))
