"""dfget's minimal blocking HTTP/1.1 client for the local API, against canned answers on a unix
socket (a thread answers each connection with the given bytes)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from damselfly.cli import local_http
from damselfly.cli.local_http import LocalHttpError


class Canned:
    """Answers the next connection with ``answer`` (then waits ``linger`` s before closing);
    ``sent`` is what the client sent."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        self.sent = b""
        self.thread: threading.Thread | None = None

    def serve(self, answer: bytes, *, linger: float = 0.0) -> None:
        def answer_one() -> None:
            conn, _ = self.listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                length = int(data.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                while len(data.partition(b"\r\n\r\n")[2]) < length:
                    data += conn.recv(4096)
                self.sent = data
                conn.sendall(answer)
                time.sleep(linger)

        self.thread = threading.Thread(target=answer_one, daemon=True)
        self.thread.start()

    def post(self, answer: bytes, *, linger: float = 0.0) -> local_http.LocalResponse:
        self.serve(answer, linger=linger)
        return local_http.post(
            self.path, "/v1/downloads", b'{"a": 1}', "application/json", timeout=5
        )


@pytest.fixture
def canned(tmp_path: Path) -> Iterator[Canned]:
    server = Canned(tmp_path / "s.sock")
    yield server
    server.listener.close()


def test_chunked_ndjson_is_split_into_lines(canned: Canned):
    body = b'{"event": "one"}\n{"event": "t'
    rest = b'wo"}\n{"event": "three"}'
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-ndjson\r\n"
        b"\r\n%x\r\n%s\r\n%x;ext=1\r\n%s\r\n0\r\n\r\n" % (len(body), body, len(rest), rest)
    )
    response = canned.post(answer)
    assert (response.status, response.headers["content-type"]) == (200, "application/x-ndjson")
    assert list(response.lines()) == [
        b'{"event": "one"}',
        b'{"event": "two"}',
        b'{"event": "three"}',
    ]
    assert canned.sent.startswith(b"POST /v1/downloads HTTP/1.1\r\n")
    assert b"Connection: close\r\n" in canned.sent
    assert canned.sent.endswith(b'\r\n\r\n{"a": 1}')
    response.close()


def test_content_length_and_read_to_close(canned: Canned):
    response = canned.post(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope!")
    assert (response.status, response.read()) == (403, b"nope")
    response.close()
    response = canned.post(b"HTTP/1.0 200 OK\r\n\r\nall of it")
    assert response.read() == b"all of it"
    response.close()


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n", "closed the connection in the headers"),
        (b"HTTP/1.1 abc OK\r\n\r\n", "is not a number"),
    ],
)
def test_what_is_not_http_is_a_clear_error(canned: Canned, answer: bytes, message: str):
    with pytest.raises(LocalHttpError, match=message):
        canned.post(answer)


def test_a_cut_chunk_is_a_reset_connection(canned: Canned):
    response = canned.post(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nshort")
    with pytest.raises(ConnectionResetError, match="middle of a message"):
        response.read()
    response.close()


def test_a_silent_daemon_times_out_at_the_deadline(canned: Canned):
    """The body's reads honour ``set_deadline``: a daemon that sends headers and then nothing
    ends the wait at the deadline, not at the connect timeout."""
    response = canned.post(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", linger=3)
    response.set_deadline(0.3)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        list(response.lines())
    assert time.monotonic() - started < 2
    response.close()
