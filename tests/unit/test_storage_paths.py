"""Where the store lives, and what of a URL it is allowed to remember."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from damselfly.storage.metadata import scrub_url
from damselfly.storage.store import default_store_dir


@pytest.mark.parametrize(
    ("env", "euid", "expected"),
    [
        ({"DAMSELFLY_STORAGE_DIR": "/srv/df"}, 0, "/srv/df"),
        ({"DAMSELFLY_STORAGE_DIR": "/srv/df"}, 1000, "/srv/df"),
        ({}, 0, "/var/lib/damselfly"),
        ({"XDG_CACHE_HOME": "/xdg"}, 1000, "/xdg/damselfly"),
        ({"XDG_CACHE_HOME": "relative"}, 1000, "/home/u/.cache/damselfly"),
        ({}, 1000, "/home/u/.cache/damselfly"),
    ],
)
def test_default_store_dir(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], euid: int, expected: str
) -> None:
    for name in ("DAMSELFLY_STORAGE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", "/home/u")
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    assert default_store_dir() == Path(expected)


def test_default_store_dir_reads_the_environment_at_call_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAMSELFLY_STORAGE_DIR", "/one")
    assert default_store_dir() == Path("/one")
    monkeypatch.setenv("DAMSELFLY_STORAGE_DIR", "/two")
    assert default_store_dir() == Path("/two")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a/b.bin", "https://example.com/a/b.bin"),
        ("https://user:pw@example.com/f", "https://example.com/f"),
        ("https://h/f?X-Amz-Signature=s&X-Amz-Credential=c&v=2", "https://h/f?v=2"),
        ("https://h/f?sig=abc&se=2030", "https://h/f"),
        ("https://h/f?b=2&a=1", "https://h/f?b=2&a=1"),
        ("https://h/f#frag", "https://h/f"),
        ("hf://owner/repo/model.safetensors", "hf://owner/repo/model.safetensors"),
        ("s3://bucket/key?token=t", "s3://bucket/key"),
    ],
)
def test_scrub_url(url: str, expected: str) -> None:
    assert scrub_url(url) == expected
