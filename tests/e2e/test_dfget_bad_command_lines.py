"""Bad command lines, table-driven, through the real dfget: the usage exit code (2), one line
on stderr (never argparse's usage block, never a traceback), and a bounded length however long
the input (a 70,000-character URL, a 200-character host label). Nothing reaches the network:
every row names an origin that refuses connections, so a row that slipped through would fail
with exit 1, not 2."""

from __future__ import annotations

import socket

import pytest

LONG = "a" * 70_000
MAX_LINE_LENGTH = 600


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


URL = f"http://127.0.0.1:{closed_port()}/f.bin"

# (id, arguments before -O, fragment the one line must hold)
BAD_LINES = [
    ("concurrent pieces 0", [URL, "--concurrent-pieces", "0"], "--concurrent-pieces 0"),
    ("concurrent pieces -3", [URL, "--concurrent-pieces", "-3"], "--concurrent-pieces -3"),
    ("concurrent pieces huge", [URL, "--concurrent-pieces", "100000"], "from 1 to 256"),
    ("concurrent pieces text", [URL, "--concurrent-pieces", "x"], "invalid int value"),
    ("origin retries -1", [URL, "--origin-retries", "-1"], "--origin-retries -1"),
    ("max files 0", [URL, "-r", "--max-files", "0"], "--max-files 0"),
    ("max requests 0", [URL, "-r", "--max-concurrent-requests", "0"], "--max-concurrent"),
    ("priority 7", [URL, "--priority", "7"], "--priority 7"),
    ("piece length 1", [URL, "--piece-length", "1"], "piece length 1"),
    ("piece length text", [URL, "--piece-length", "lots"], "--piece-length 'lots'"),
    ("timeout 0", [URL, "--timeout", "0"], "--timeout '0'"),
    ("-I without -r", [URL, "-I", "*.json"], "needs -r"),
    ("--exclude without -r", [URL, "--exclude", "*.bin"], "needs -r"),
    ("unknown flag", [URL, "--no-such-flag"], "see dfget --help"),
    ("no URL", [], "required: url"),
    ("long unknown flag", [URL, "--" + LONG], "see dfget --help"),
    ("long URL scheme", [LONG + "://x/y"], "scheme"),
    ("long host", [f"http://{LONG}/f.bin"], "host"),
    ("long host label", [f"http://{'b' * 200}.example/f.bin"], "label of 200 characters"),
    ("empty host label", ["http://a..example/f.bin"], "empty label"),
    ("long header", [URL, "-H", LONG], "header"),
    ("long piece length", [URL, "--piece-length", LONG], "--piece-length"),
]


@pytest.mark.parametrize(
    ("argv", "fragment"), [row[1:] for row in BAD_LINES], ids=[row[0] for row in BAD_LINES]
)
async def test_bad_command_line_is_one_short_usage_line(tmp_path, dfget, argv, fragment):
    result = await dfget.run(*argv, "-O", str(tmp_path / "x"), "--standalone")
    assert result.code == 2, result.stderr[:2000]
    assert len(result.error_lines) == 1, result.stderr[:2000]
    line = result.error_lines[0]
    assert line.startswith("dfget: error: "), line[:2000]
    assert fragment in line, line[:2000]
    assert len(line) <= MAX_LINE_LENGTH
    assert not (tmp_path / "x").exists()


async def test_a_long_url_that_fails_at_the_origin_is_cut_too(tmp_path, dfget):
    url = f"{URL}?q={LONG}"
    result = await dfget.run(
        url, "-O", str(tmp_path / "x"), "--standalone", "--origin-retries", "0"
    )
    assert result.code == 1, result.stderr[:2000]
    assert len(result.error_lines) == 1, result.stderr[:2000]
    assert len(result.error_lines[0]) <= MAX_LINE_LENGTH
    assert "cannot connect" in result.error_lines[0]
