"""What starting dfget costs: a download handed to the daemon must not pay for the HTTP
client, the download engine, the piece store or the hub caches (issue 15: small files through
a daemon). Checked in a fresh interpreter, where nothing is imported yet."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import pytest

from damselfly.testing.imports import imported_by

HEAVY = (
    "aiohttp",
    "asyncio",
    "pydantic",
    "damselfly.api.hf",
    "damselfly.api.offline",
    "damselfly.cli.hub_cache",
    "damselfly.daemon.engine.peer_download",
    "damselfly.download.source_fetcher",
    "damselfly.download.file_download",
    "damselfly.download.hub_layouts",
    "damselfly.storage.store",
)


def test_dfget_starts_without_the_http_client_engine_store_or_hub_caches():
    loaded = imported_by("damselfly.cli.dfget")
    assert "damselfly.cli.dfget" in loaded  # the probe itself works
    assert sorted(loaded & set(HEAVY)) == []


HANDOFF = """
from pathlib import Path
from damselfly.cli.daemon_client import Handoff
from damselfly.cli.dfget_args import parse_args
from damselfly.cli.dfget_jobs import request_fields
args = parse_args(["https://h/f.json", "-O", "/tmp/f.json", "-H", "A: b"], {"HOME": "/h"})
assert Handoff.from_fields(request_fields(args, {"HOME": "/h"}, Path("/"))).body
"""


def test_a_plain_download_goes_to_the_daemon_without_pydantic_or_asyncio():
    """The flags, the request and its JSON for an https:// URL: neither the request model
    (pydantic, ~40 ms) nor asyncio (~40 ms) is imported; the blocking client needs neither."""
    loaded = imported_by("damselfly.cli.dfget_jobs", then=HANDOFF)
    assert "damselfly.cli.dfget_jobs" in loaded
    assert sorted(loaded & {"pydantic", "asyncio", "damselfly.download.request"}) == []


# A whole hand-off: dfget.main against a stand-in daemon on a unix socket that answers any POST
# with one ``result`` event (the stand-in's own imports, ``threading``, are not in question).
# ``@URL@``, ``@DIR@`` and ``@MORE@`` are filled in by ``_full_run``.
FULL_RUN = r"""
import os, socket, sys, threading
from damselfly.cli.dfget import main
d = "@DIR@"
path = os.path.join(d, "d.sock")
server = socket.socket(socket.AF_UNIX)
server.bind(path)
server.listen(1)
asked = []
def answer():
    conn, _ = server.accept()
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    asked.append(data)
    line = b'{"event":"result","files":1,"bytes":2,"source_bytes":2,"peer_bytes":0}\n'
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(line)
    conn.sendall(head + line)
    conn.close()
threading.Thread(target=answer, daemon=True).start()
argv = ["@URL@", "-O", os.path.join(d, "out"), "-e", path, "--no-progress", @MORE@]
assert main(argv, {"HOME": d, "HF_HOME": d}) == 0
assert asked and asked[0].startswith(b"POST /v1/downloads "), asked
"""


def _full_run(tmp_path, url: str, *more: str) -> str:
    extra = ", ".join(repr(m) for m in more)
    return FULL_RUN.replace("@DIR@", str(tmp_path)).replace("@URL@", url).replace("@MORE@", extra)


def test_a_whole_hand_off_imports_neither_logging_nor_dataclasses(tmp_path):
    """dfget at its default log level, the daemon answering: ``logging`` (~6 ms),
    ``dataclasses`` (~7 ms, with ``inspect``) and ``shutil`` (~3 ms) stay out of the process;
    with the stand-in broken the run fails instead of passing vacuously."""
    loaded = imported_by("damselfly.cli.dfget", then=_full_run(tmp_path, "http://h/f.json"))
    assert "damselfly.cli.local_http" in loaded
    assert sorted(loaded & {"logging", "dataclasses", "inspect", "shutil", "asyncio"}) == []


def test_a_whole_hub_hand_off_builds_no_request_model(tmp_path):
    """The same for an hf:// file, through ``main`` (the hub defaults, the cache wrapper)."""
    loaded = imported_by("damselfly.cli.dfget", then=_full_run(tmp_path, "hf://o/r/c.json"))
    assert "damselfly.cli.hub_cache" in loaded
    heavy = {"pydantic", "damselfly.download.request", "damselfly.backends.hf_options"}
    heavy |= {"damselfly.api.offline", "damselfly.download.hub_layouts", "aiohttp", "asyncio"}
    assert sorted(loaded & heavy) == []


def test_at_info_level_the_summary_is_logged(tmp_path):
    code = _full_run(tmp_path, "http://h/f.json", "-l", "info")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "dfget: INFO: 1 file(s), 2 B; 2 B from the origin" in done.stderr


def _stand_in_daemon(path: str) -> None:
    """One answer on a unix socket at ``path``: a ``result`` event, whatever was asked."""
    import socket
    import threading

    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(1)

    def answer() -> None:
        conn, _ = server.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        line = b'{"event":"result","files":1,"bytes":2,"source_bytes":2,"peer_bytes":0}\n'
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(line) + line)
        conn.close()
        server.close()

    threading.Thread(target=answer, daemon=True).start()


@pytest.fixture
def damselfly_logger():
    """The ``damselfly`` logger as it was before the test: ``main`` in this process sets it
    up (its own handler, no propagation), which later tests' ``caplog`` must not inherit."""
    import logging

    logger = logging.getLogger("damselfly")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved


def test_an_in_process_caller_gets_the_level_it_asks_for_each_time(tmp_path, damselfly_logger):
    """Once ``logging`` is set up in the process (by an earlier call at debug), a hand-off at
    the default level sets it up again: no debug lines carried over to the next call."""
    import logging

    from damselfly.cli.dfget import main

    def hand_off(*more: str) -> int:
        sock = str(tmp_path / "d.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(sock)
        _stand_in_daemon(sock)
        argv = ["http://h/f.json", "-O", str(tmp_path / "o"), "-e", sock, "--no-progress"]
        return main([*argv, *more], {"HOME": str(tmp_path)})

    assert hand_off("-l", "debug") == 0
    assert damselfly_logger.level == logging.DEBUG
    assert hand_off() == 0
    assert damselfly_logger.level == logging.WARNING


HUB_HANDOFF = """
from pathlib import Path
from damselfly.cli import dfget
from damselfly.cli.daemon_client import Handoff
from damselfly.cli.dfget_args import parse_args
from damselfly.cli.dfget_jobs import request_fields
from damselfly.cli.hub_cache import run_or_cached_lazily
env = {"HOME": "/h", "HF_TOKEN": "hf_x"}
args = parse_args(["hf://o/r/config.json"], env)
fields = request_fields(args, env, Path("/"), plain=True)
dfget.hub_defaults(fields)
assert fields["source"] == {
    "token": "hf_x", "revision": "main", "endpoint": "https://huggingface.co", "cache": True
}, fields["source"]
assert Handoff.from_fields(fields).body
"""


def test_a_hub_file_goes_to_the_daemon_without_pydantic_or_the_cache_lookup():
    """An hf:// file handed to the daemon: its options resolved as the model's JSON, neither
    the request model (pydantic, ~100 ms with the options models) nor the hub caches' lookup
    (hub layouts, the download pipeline, ~40 ms) nor the HTTP client is imported."""
    loaded = imported_by("damselfly.cli.dfget", then=HUB_HANDOFF)
    assert "damselfly.cli.hub_cache" in loaded
    heavy = {"pydantic", "damselfly.download.request", "damselfly.backends.hf_options"}
    heavy |= {"damselfly.api.offline", "damselfly.download.hub_layouts", "aiohttp"}
    assert sorted(loaded & heavy) == []


@pytest.mark.parametrize(
    ("argv", "env", "endpoint"),
    [
        (
            ["hf://datasets/o/r/a.json", "--hf-revision", "v1", "--hf-token", "hf_t"],
            {"HF_ENDPOINT": "https://mirror.example/hf/"},
            "https://mirror.example/hf",
        ),
        (
            ["modelscope://o/r/a.json", "--ms-revision", "v1", "--ms-token", "ms_t"],
            {"MODELSCOPE_DOMAIN": "ms.example"},
            "https://ms.example",
        ),
    ],
)
def test_plain_hub_options_are_what_the_model_writes(argv, env, endpoint):
    """The JSON dfget sends for a hub URL without the model is the model's own JSON."""
    from pathlib import Path

    from damselfly.cli.dfget_args import parse_args
    from damselfly.cli.dfget_jobs import request_fields
    from damselfly.download.request import DownloadRequest

    env = {"HOME": "/h", "MODELSCOPE_HOME": "/h/none", **env}
    args = parse_args([*argv, "-O", "/tmp/a.json"], env)
    plain = request_fields(args, env, Path("/"), plain=True)
    model = request_fields(args, env, Path("/"))
    assert isinstance(plain["source"], dict)
    assert not isinstance(model["source"], dict)
    assert DownloadRequest(**plain).to_json() == DownloadRequest(**model).to_json()
    assert plain["source"]["endpoint"] == endpoint


PLUGINS = """
import os, sys
from damselfly.cli import dfget
sys.argv = ["dfget", "--version"]
try:
    dfget.main()
except SystemExit:
    pass
print("PLUGINS=" + repr(os.environ.get("PYDANTIC_DISABLE_PLUGINS")), file=sys.stderr)
"""


def _plugins_setting(env: dict[str, str]) -> str:
    done = subprocess.run([sys.executable, "-c", PLUGINS], capture_output=True, text=True, env=env)
    return done.stderr.strip().splitlines()[-1]


def test_the_dfget_command_skips_pydantics_plugin_search_unless_told_otherwise():
    """The command (not an in-process caller) turns off pydantic's plugin search, which reads
    every installed package's metadata; a value the user set is kept."""
    env_before = os.environ.get("PYDANTIC_DISABLE_PLUGINS")
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    assert _plugins_setting(env) == "PLUGINS='__all__'"
    assert _plugins_setting(env | {"PYDANTIC_DISABLE_PLUGINS": "mine"}) == "PLUGINS='mine'"
    from damselfly.cli.dfget import main

    with pytest.raises(SystemExit):
        main(["--version"], {"HOME": "/h"})
    assert os.environ.get("PYDANTIC_DISABLE_PLUGINS") == env_before
