"""What starting dfget costs: a download handed to the daemon must not pay for the HTTP
client, the download engine, the piece store or the hub caches (issue 15: small files through
a daemon). Checked in a fresh interpreter, where nothing is imported yet."""

from __future__ import annotations

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


def test_the_api_package_imports_its_functions_when_first_used():
    loaded = imported_by("damselfly.api.offline")
    assert "aiohttp" not in loaded
    import damselfly.api as api

    assert api.snapshot_download.__module__ == "damselfly.api.hf"
    assert api.hf_hub_download.__module__ == "damselfly.api.hf"
