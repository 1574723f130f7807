"""BitTorrent: ``aria2c`` on every node, ``opentracker`` as the tracker, one ``aria2c`` seed.

Two variants, the same torrent (1 MiB pieces, made once per invocation with ``mktorrent``):

* ``bt-cold``: the seed starts at the same moment as the nodes with nothing on disk and reads
  the origin as a web seed (BEP 19 ``url-list``). Only the seed's torrent file carries the
  ``url-list``; the nodes' has none (the info hash is the same: ``url-list`` is outside the
  info dictionary), so only the seed reads the origin, as damselfly's seed does.
* ``bt-warm``: the seed already holds the file (untimed copy) and is seeding before the start.

The tracker (fresh per run) accepts only our info hash (``-w`` whitelist: the Debian build
has no open mode). Every aria2c keeps seeding after its own copy is complete (``--seed-ratio
0.0``) until the last node is done; a node's completion time is written by aria2c's
``--on-bt-download-complete`` hook, which runs when the download ends, before seeding.
DHT and local peer discovery are off: peers come from the tracker and peer exchange.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from bench.common.measure import tail
from bench.common.workspace import BenchError
from bench.swarm.netns import Host
from bench.swarm.procs import Proc, Processes
from bench.swarm.system import CONTROL, SEED, Context, Deployment, GatedService, NodeJob

TRACKER_PORT = 6969
PIECE_LENGTH_LOG2 = 20  # 1 MiB pieces
TRACKER_TIMEOUT = 20.0
SEED_TIMEOUT = 60.0
HOOK = """#!/bin/sh
# aria2c --on-bt-download-complete: $1 gid, $2 number of files, $3 the first file's path
date +%s.%N > "$3.done.tmp" && mv "$3.done.tmp" "$3.done"
"""
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Torrents:
    """The two .torrent files (with and without the web seed) and the info hash, made once."""

    def __init__(self) -> None:
        self._made: tuple[Path, Path, str] | None = None

    def get(self, ctx: Context) -> tuple[Path, Path, str]:
        """``(plain, with_web_seed, info_hash_hex)``."""
        if self._made is None:
            self._made = _make_torrents(ctx)
        return self._made


def _make_torrents(ctx: Context) -> tuple[Path, Path, str]:
    directory = ctx.work_dir / "bittorrent"
    directory.mkdir(parents=True, exist_ok=True)
    announce = f"http://{ctx.layout.control.ip}:{TRACKER_PORT}/announce"
    plain, web = directory / "plain.torrent", directory / "web.torrent"
    base = [ctx.tools.mktorrent, "-l", str(PIECE_LENGTH_LOG2), "-a", announce]
    _check([*base, "-o", str(plain), str(ctx.source.path)])
    _check([*base, "-w", ctx.url, "-o", str(web), str(ctx.source.path)])
    hashes = {_info_hash(ctx.tools.aria2c, torrent) for torrent in (plain, web)}
    if len(hashes) != 1:
        raise BenchError(f"the two torrents have different info hashes: {hashes}")
    return plain, web, hashes.pop()


def _info_hash(aria2c: str, torrent: Path) -> str:
    shown = _check([aria2c, "--no-conf", "-S", str(torrent)])
    for line in shown.splitlines():
        if line.startswith("Info Hash:"):
            return line.split(":", 1)[1].strip()
    raise BenchError(f"no info hash in `aria2c -S {torrent}`")


def _check(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


class BitTorrent:
    def __init__(self, torrents: Torrents, *, warm: bool) -> None:
        self._torrents = torrents
        self._warm = warm
        self.name = "bt-warm" if warm else "bt-cold"
        self.source_on_seed = warm

    def deploy(self, ctx: Context, procs: Processes) -> Deployment:
        ctx.tools.require("aria2c", "opentracker", "mktorrent")
        plain, web, info_hash = self._torrents.get(ctx)
        tracker = _start_tracker(ctx, procs, info_hash)
        hook = ctx.run_dir / "done-hook.sh"
        hook.write_text(HOOK)
        hook.chmod(0o755)
        seed_dir = ctx.node_dir(ctx.layout.seed)
        services = [(CONTROL, tracker)]
        gated = []
        if self._warm:
            shutil.copyfile(ctx.source.path, seed_dir / ctx.source.path.name)
            seed_argv = aria2c_argv(ctx.tools.aria2c, plain, seed_dir, hook, seeding=True)
            seed = procs.start("seed", ctx.layout.seed, seed_argv, ctx.log("seed"))
            services.append((SEED, seed))
            _wait_seeders(ctx, info_hash)
        else:
            seed_argv = aria2c_argv(ctx.tools.aria2c, web, seed_dir, hook, seeding=False)
            gated.append(GatedService(SEED, ctx.layout.seed, seed_argv))
        jobs = [self._job(ctx, plain, hook, host) for host in ctx.layout.nodes]
        return Deployment(services=services, jobs=jobs, gated=gated)

    def collect(self, ctx: Context, deployment: Deployment) -> dict[str, Any]:
        return {"piece_length": 1 << PIECE_LENGTH_LOG2}

    def _job(self, ctx: Context, torrent: Path, hook: Path, host: Host) -> NodeJob:
        directory = ctx.node_dir(host)
        output = directory / ctx.source.path.name
        argv = aria2c_argv(ctx.tools.aria2c, torrent, directory, hook, seeding=False)
        done = output.with_name(output.name + ".done")
        return NodeJob(host, argv, output, done_file=done, is_daemon=True)


def aria2c_argv(
    aria2c: str, torrent: Path, directory: Path, hook: Path, *, seeding: bool
) -> list[str]:
    argv = [aria2c, "--no-conf", "--enable-dht=false", "--enable-dht6=false"]
    argv += ["--bt-enable-lpd=false", "--enable-peer-exchange=true", "--disable-ipv6=true"]
    argv += ["--seed-ratio=0.0", "--file-allocation=none", "--auto-file-renaming=false"]
    argv += ["--summary-interval=0", "--show-console-readout=false", "--console-log-level=warn"]
    argv += ["--listen-port=6881", f"--dir={directory}", f"--on-bt-download-complete={hook}"]
    if seeding:
        argv += ["--bt-seed-unverified=true", "--check-integrity=false"]
    return [*argv, str(torrent)]


def _start_tracker(ctx: Context, procs: Processes, info_hash: str) -> Proc:
    directory = ctx.run_dir / "tracker"
    directory.mkdir(parents=True)
    (directory / "whitelist").write_text(info_hash + "\n")
    host = ctx.layout.control
    argv = [ctx.tools.opentracker, "-i", host.ip, "-p", str(TRACKER_PORT)]
    argv += ["-P", str(TRACKER_PORT), "-w", "whitelist", "-d", str(directory), "-u", "nobody"]
    tracker = procs.start("tracker", host, argv, ctx.log("tracker"), cwd=directory)
    deadline = time.monotonic() + TRACKER_TIMEOUT
    while not _listening(host.ip, TRACKER_PORT):
        if tracker.popen.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"opentracker did not start: {tail(ctx.log('tracker'))}")
        time.sleep(0.05)
    return tracker


def _listening(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=1):
            return True
    except OSError:
        return False


def _wait_seeders(ctx: Context, info_hash: str) -> None:
    """Until the tracker lists a complete peer (the warm seed) for our torrent."""
    raw = bytes.fromhex(info_hash)
    url = f"http://{ctx.layout.control.ip}:{TRACKER_PORT}/scrape?info_hash="
    url += urllib.parse.quote_from_bytes(raw)
    marker = b"8:completei"
    deadline = time.monotonic() + SEED_TIMEOUT
    while time.monotonic() < deadline:
        with _OPENER.open(url, timeout=5) as response:
            body = response.read()
        at = body.find(marker)
        if at >= 0 and body[at + len(marker) : at + len(marker) + 1] not in (b"0", b""):
            return
        time.sleep(0.1)
    seed_log = tail(ctx.log("seed"))
    raise BenchError(f"the tracker lists no seed after {SEED_TIMEOUT:.0f} s: {seed_log}")
