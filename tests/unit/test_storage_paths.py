"""Where the store lives, and what of a URL it is allowed to remember."""

from __future__ import annotations

from pathlib import Path

import pytest

from damselfly.config.paths import default_store_dir, store_dir
from damselfly.core.redact import scrub_url


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
def test_default_store_dir(env: dict[str, str], euid: int, expected: str) -> None:
    assert default_store_dir({"HOME": "/home/u", **env}, uid=euid) == Path(expected)


def test_a_configured_store_dir_wins_over_the_environment() -> None:
    env = {"DAMSELFLY_STORAGE_DIR": "/srv/df", "HOME": "/home/u"}
    assert store_dir("/flag", env, uid=1000) == Path("/flag")
    assert store_dir("~/df", env, uid=1000) == Path.home() / "df"
    assert store_dir(None, env, uid=1000) == Path("/srv/df")
    assert store_dir("", {"HOME": "/home/u"}, uid=1000) == Path("/home/u/.cache/damselfly")


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
