"""dfdaemon's local API on a real unix socket, with ``StoreRunner`` and a real HTTP origin;
dfget's client (``run_through_daemon``) against it."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import aiohttp
import pytest
from pydantic import SecretStr

from damselfly.backends.hf_options import HfOptions
from damselfly.backends.registry import default_registry
from damselfly.cli.daemon_client import (
    OTHER_USER_WARNING,
    DaemonJobError,
    Handoff,
    run_through_daemon,
)
from damselfly.core.errors import ConfigError
from damselfly.daemon.engine.runner import StoreRunner
from damselfly.daemon.servers.local_api import LocalApi
from damselfly.demo.hub_repos import HubRepo
from damselfly.download.events import CountingObserver, DownloadObserver
from damselfly.download.request import DownloadRequest
from damselfly.protocol.local_api import RunResult
from damselfly.storage.store import Store
from damselfly.testing.hf_hub import HfTestHub
from damselfly.testing.origin import Behaviour, OriginServer

KiB = 1024
MiB = 1024 * KiB
NOBODY = 65534


@pytest.fixture
def sock_dir():
    # Short (unix socket paths are limited to 107 bytes) and enterable by other users.
    path = Path(tempfile.mkdtemp(prefix="dfd-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def origin():
    async with OriginServer() as server:
        yield server


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "store") as store:
        yield store


class RecordingRunner:
    """``StoreRunner`` plus what a test needs to see: started, cancelled."""

    def __init__(self, inner: StoreRunner) -> None:
        self.inner = inner
        self.cancelled = asyncio.Event()

    async def run(self, request: DownloadRequest, observer: DownloadObserver) -> RunResult:
        try:
            return await self.inner.run(request, observer)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


@pytest.fixture
async def runner(store):
    return RecordingRunner(StoreRunner(store, default_registry))


@pytest.fixture
async def api(sock_dir, runner):
    async with LocalApi(sock_dir / "d.sock", runner, progress_interval=0.02) as api:
        yield api


async def post(path: Path, body: bytes) -> tuple[int, list[dict]]:
    connector = aiohttp.UnixConnector(path=str(path))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.post("http://x/v1/downloads", data=body) as response,
    ):
        text = await response.text()
    if response.status != 200:
        return response.status, [json.loads(text)]
    return response.status, [json.loads(line) for line in text.splitlines()]


def request_for(url: str, output: Path, **fields) -> DownloadRequest:
    return DownloadRequest(url=url, output=str(output), piece_length=4 * MiB, **fields)


async def test_download_streams_events_and_delivers_identical_bytes(tmp_path, api, origin):
    data = os.urandom(9 * MiB + 5)
    url = origin.put("/w.bin", data)
    origin.set_behaviour(Behaviour(rate=60 * MiB), "/w.bin")  # long enough for progress
    status, events = await post(api.path, request_for(url, tmp_path / "w.bin").to_json().encode())
    assert status == 200
    names = [e["event"] for e in events]
    assert names[0] == "file_started"
    assert names[-2:] == ["file_finished", "result"]
    assert events[0] == {"event": "file_started", "name": "w.bin", "total": len(data), "held": 0}
    progress = [e["bytes"] for e in events if e["event"] == "progress"]
    assert sum(progress) == len(data)
    assert len(progress) >= 2
    assert events[-1] == {
        "event": "result",
        "files": 1,
        "bytes": len(data),
        "source_bytes": len(data),
        "peer_bytes": 0,
        "reused_bytes": 0,
        "stdout": "",
    }
    assert (tmp_path / "w.bin").read_bytes() == data


async def test_client_replays_into_the_display_and_second_run_uses_the_store(
    tmp_path, api, origin, store
):
    data = os.urandom(5 * MiB)
    url = origin.put("/m.bin", data)
    display = CountingObserver()
    result = await through_daemon(api.path, request_for(url, tmp_path / "1.bin"), display)
    assert result == RunResult(1, len(data), len(data), 0, 0, "")
    assert (display.started, display.finished, display.received_bytes) == (
        ["1.bin"],
        ["1.bin"],
        len(data),
    )
    served = origin.bytes_served
    again = await through_daemon(api.path, request_for(url, tmp_path / "2.bin"), display)
    assert again is not None
    assert (again.source_bytes, again.reused_bytes) == (0, len(data))
    assert origin.bytes_served == served
    assert (tmp_path / "2.bin").read_bytes() == data
    assert len(store.list_tasks()) == 1


@pytest.mark.parametrize(
    ("path", "fields", "code", "message"),
    [
        ("/missing.bin", {}, 1, "404"),
        ("/dir/", {"recursive": True, "digest": "sha256:" + "0" * 64}, 2, "--digest"),
        ("/x.bin", {"back_to_source": False}, 2, "--disable-back-to-source"),
    ],
)
async def test_failures_end_the_stream_with_an_error_event(
    tmp_path, api, origin, path, fields, code, message
):
    request = request_for(origin.url(path), tmp_path / "out", **fields)
    status, events = await post(api.path, request.to_json().encode())
    assert status == 200
    assert events[-1]["event"] == "error"
    assert (events[-1]["exit_code"], message in events[-1]["message"]) == (code, True)
    with pytest.raises(DaemonJobError, match=message) as caught:
        await through_daemon(api.path, request, CountingObserver())
    assert caught.value.exit_code == code
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("body", "message"),
    [(b"{", "not JSON"), (b'{"url": "https://h/f", "bogus": 1}', "bogus")],
)
async def test_malformed_request_is_400(api, body, message):
    status, [answer] = await post(api.path, body)
    assert (status, answer["code"], message in answer["error"]) == (400, "bad_request", True)


async def test_health(api):
    connector = aiohttp.UnixConnector(path=str(api.path))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://x/v1/health") as response,
    ):
        body = await response.json()
    assert body["pid"] == os.getpid()
    assert body["version"]


async def test_socket_is_owner_only_and_removed_on_close(sock_dir, runner):
    api = LocalApi(sock_dir / "sub" / "d.sock", runner)
    await api.start()
    info = os.stat(api.path)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert stat.S_IMODE(os.stat(sock_dir / "sub").st_mode) == 0o755
    assert [p.name for p in (sock_dir / "sub").iterdir()] == ["d.sock"]  # no temp name left
    await api.aclose()
    assert not api.path.exists()


async def test_group_socket_is_0660_with_that_group(sock_dir, runner):
    group = grp.getgrgid(NOBODY).gr_name
    async with LocalApi(sock_dir / "d.sock", runner, group=group) as api:
        info = os.stat(api.path)
        assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o660, NOBODY)


async def test_unknown_group_is_a_config_error(sock_dir, runner):
    with pytest.raises(ConfigError, match="no such group"):
        await LocalApi(sock_dir / "d.sock", runner, group="no-such-group-here").start()
    assert not (sock_dir / "d.sock").exists()


async def test_stale_socket_is_replaced_but_a_file_or_live_socket_is_not(sock_dir, runner):
    path = sock_dir / "d.sock"
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(path))  # closed without unlinking: a stale socket
    async with LocalApi(path, runner) as api:
        status, _ = await post(api.path, b"{")
        assert status == 400
        with pytest.raises(ConfigError, match="another process is listening"):
            await LocalApi(path, runner).start()
        assert path.exists()
    other = sock_dir / "file.sock"
    other.write_text("keep me")
    with pytest.raises(ConfigError, match="not a socket"):
        await LocalApi(other, runner).start()
    assert other.read_text() == "keep me"


async def through_daemon(
    path: Path, request: DownloadRequest, display: CountingObserver
) -> RunResult | None:
    """dfget's blocking client, in a thread: the daemon under test runs on this loop."""
    return await asyncio.to_thread(run_through_daemon, path, Handoff.of(request), display)


async def test_client_interrupted_closes_the_connection_and_the_daemon_cancels(
    tmp_path, api, runner, origin
):
    data = os.urandom(8 * MiB)
    url = origin.put("/slow.bin", data)
    origin.set_behaviour(Behaviour(rate=2 * MiB), "/slow.bin")
    display = InterruptOnStart()  # what Ctrl-C in dfget does, mid-download
    with pytest.raises(Interrupted):
        await through_daemon(api.path, request_for(url, tmp_path / "s.bin"), display)
    await asyncio.wait_for(runner.cancelled.wait(), 3)
    assert api.active_downloads == 0
    served = origin.bytes_served
    await asyncio.sleep(0.3)
    assert origin.bytes_served - served < 256 * KiB  # the origin is no longer being read
    assert served < len(data)
    assert not (tmp_path / "s.bin").exists()


class Interrupted(Exception):
    pass


class InterruptOnStart(CountingObserver):
    def file_started(self, name, total_bytes, held_bytes):
        super().file_started(name, total_bytes, held_bytes)
        raise Interrupted


# -- callers running as another user -------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from damselfly.cli.daemon_client import Handoff, run_through_daemon
    from damselfly.download.events import CountingObserver
    from damselfly.download.request import DownloadRequest
    # Imports first: the interpreter's files may not be readable by nobody.
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    request = DownloadRequest(url=sys.argv[2], output="/tmp/never-written")
    print(run_through_daemon(Path(sys.argv[1]), Handoff.of(request), CountingObserver()))
    """
)


async def run_as_nobody(socket_path: Path, url: str) -> tuple[str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        str(socket_path),
        url,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd="/",
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return out.decode(), err.decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another uid")
async def test_caller_with_another_uid_gets_403_and_dfget_falls_back(sock_dir, runner, origin):
    url = origin.put("/f.bin", b"x" * 1000)
    group = grp.getgrgid(NOBODY).gr_name  # the child may connect, but is not the daemon's uid
    async with LocalApi(sock_dir / "g.sock", runner, group=group) as api:
        out, err = await run_as_nobody(api.path, url)
        assert (out, err) == ("None\n", OTHER_USER_WARNING + "\n")
        assert api.active_downloads == 0
    async with LocalApi(sock_dir / "o.sock", runner) as api:  # 0600: cannot even connect
        out, err = await run_as_nobody(api.path, url)
        assert (out, err) == ("None\n", OTHER_USER_WARNING + "\n")
    assert origin.request_count() == 0
    assert not Path("/tmp/never-written").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another uid")
async def test_raw_403_body_names_the_reason(sock_dir, runner):
    group = grp.getgrgid(NOBODY).gr_name
    script = textwrap.dedent(
        """
        import os, socket, sys
        os.setgroups([]); os.setgid(65534); os.setuid(65534)
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
        body = b'{"url": "https://h/f", "output": "/o"}'
        s.sendall(b"POST /v1/downloads HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n"
                  b"Content-Length: %d\\r\\n\\r\\n%s" % (len(body), body))
        print(b"".join(iter(lambda: s.recv(65536), b"")).decode())
        """
    )
    async with LocalApi(sock_dir / "g.sock", runner, group=group) as api:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(api.path), stdout=subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(process.communicate(), 30)
    head, _, body = out.decode().partition("\r\n\r\n")
    assert head.startswith("HTTP/1.1 403")
    assert json.loads(body)["code"] == "uid_mismatch"


def test_missing_socket_means_no_daemon(sock_dir, capsys):
    handoff = Handoff.of(DownloadRequest(url="https://h/f", output="/o"))
    assert run_through_daemon(sock_dir / "none.sock", handoff, CountingObserver()) is None
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(sock_dir / "dead.sock"))
    assert run_through_daemon(sock_dir / "dead.sock", handoff, CountingObserver()) is None
    assert capsys.readouterr().err == ""


async def test_secrets_in_a_request_are_never_logged_or_echoed(tmp_path, api, origin, caplog):
    caplog.set_level("DEBUG", logger="damselfly")
    request = request_for(
        origin.url("/gone.bin") + "?X-Amz-Signature=sig0123&X-Amz-Credential=cred0123",
        tmp_path / "gone.bin",
        headers=(("Authorization", "Bearer tok0123"),),
        env={"AWS_SECRET_ACCESS_KEY": "env0123", "HOME": "/home/u"},
    )
    status, events = await post(api.path, request.to_json().encode())
    assert (status, events[-1]["event"]) == (200, "error")
    assert "gone.bin" in caplog.text  # the download was logged, by its scrubbed URL
    shown = caplog.text + json.dumps(events)
    for secret in ("sig0123", "cred0123", "tok0123", "env0123"):
        assert secret not in shown


async def test_source_option_secrets_are_never_logged_or_echoed(tmp_path, api, origin, caplog):
    """A hub token travels in the request's typed source options; it reaches the backend and
    nothing else."""
    caplog.set_level("DEBUG", logger="damselfly")
    endpoint = origin.url("/hub").rstrip("/")
    source = HfOptions(token=SecretStr("hf0123"), endpoint=endpoint)
    request = request_for("hf://owner/repo/gone.bin", tmp_path / "gone.bin", source=source)
    status, events = await post(api.path, request.to_json().encode())
    assert (status, events[-1]["event"]) == (200, "error")
    assert "owner/repo" in caplog.text
    assert "hf0123" not in caplog.text + json.dumps(events)


DAEMON_TOKEN = "hf_daemon_users_own_login_0123"


@pytest.fixture
async def private_hub(tmp_path, monkeypatch):
    """A hub whose private repo opens to the token saved in the daemon user's own
    ``~/.cache/huggingface/token`` (the daemon here runs in the test process)."""
    home = tmp_path / "daemon-home"
    (home / ".cache" / "huggingface").mkdir(parents=True)
    (home / ".cache" / "huggingface" / "token").write_text(DAEMON_TOKEN)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))
    repo = HubRepo(
        "acme/private", {"a.txt": b"secret bytes\n"}, private=True,
        allowed_tokens=frozenset({DAEMON_TOKEN}),
    )  # fmt: skip
    async with HfTestHub([repo]) as hub:
        yield hub


@pytest.mark.parametrize("env", [{}, {"HF_TOKEN_PATH": "<token file>"}, {"HOME": "<home>"}])
async def test_a_hub_request_without_source_is_refused_not_resolved_with_the_daemons_login(
    tmp_path, api, private_hub, env
):
    """Resolved on arrival, the request would pick up the daemon user's own token (its home,
    or a token file the request's env names) and download a repo its sender cannot read."""
    token_file = Path(os.environ["HOME"], ".cache", "huggingface", "token")
    env = {k: v.replace("<token file>", str(token_file)) for k, v in env.items()}
    env = {k: v.replace("<home>", os.environ["HOME"]) for k, v in env.items()}
    body = json.dumps(
        {
            "url": "hf://acme/private/a.txt",
            "output": str(tmp_path / "a.txt"),
            "env": {"HF_ENDPOINT": private_hub.endpoint, **env},
        }
    )
    status, [answer] = await post(api.path, body.encode())
    assert (status, answer["code"]) == (400, "bad_request")
    assert "without its source options" in answer["error"]
    assert private_hub.stats.log == []
    assert not (tmp_path / "a.txt").exists()


async def test_a_hub_request_whose_source_has_no_token_sends_none(tmp_path, api, private_hub):
    """``source.token`` unset means anonymous: the daemon never falls back to its own login."""
    source = HfOptions(token=None, endpoint=private_hub.endpoint)
    request = request_for("hf://acme/private/a.txt", tmp_path / "a.txt", source=source)
    status, events = await post(api.path, request.to_json().encode())
    assert (status, events[-1]["event"]) == (200, "error")
    assert "not found" in events[-1]["message"]
    assert private_hub.stats.log, "the hub was asked"
    assert not any(record.authorized for record in private_hub.stats.log)
    assert not (tmp_path / "a.txt").exists()
