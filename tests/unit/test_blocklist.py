"""The pure blocklist matcher (core/blocklist.py), table-driven."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from damselfly.core.blocklist import (
    BlockQuery,
    BlockRule,
    blocked_message,
    find_blocking_rule,
    validate_pattern,
)

NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "pattern", "query", "blocked"),
    [
        (
            "url",
            "https://cdn.example.com/*.bin",
            BlockQuery(url="https://cdn.example.com/a/b.bin"),
            True,
        ),
        (
            "url",
            "https://cdn.example.com/*.bin",
            BlockQuery(url="https://cdn.example.com/a.txt"),
            False,
        ),
        ("url", "https://cdn.example.com/*", BlockQuery(url="https://CDN.example.com/a"), False),
        ("url", "hf://org/*", BlockQuery(url="hf://org/model/config.json"), True),
        ("url", "https://x/?", BlockQuery(url=""), False),
        ("repo", "hf://org/model", BlockQuery(url="hf://org/model"), True),
        ("repo", "hf://org/model", BlockQuery(url="hf://org/model@v1.0/weights.bin"), True),
        ("repo", "hf://org/model", BlockQuery(url="hf://Org/Model@main"), True),
        ("repo", "hf://org/model", BlockQuery(url="hf://org/model2"), False),
        ("repo", "hf://org/model", BlockQuery(url="hf://datasets/org/model"), False),
        ("repo", "hf://org/model", BlockQuery(url="modelscope://org/model"), False),
        ("repo", "modelscope://datasets/o/d", BlockQuery(url="modelscope://datasets/o/d/x"), True),
        ("repo", "hf://org/model", BlockQuery(url="https://huggingface.co/org/model"), False),
        (
            "image",
            "docker.io/library/nginx",
            BlockQuery(image="docker.io/library/nginx:1.25"),
            True,
        ),
        ("image", "docker.io/library/nginx", BlockQuery(image="docker.io/library/redis:7"), False),
        (
            "image",
            "docker.io/library/nginx:1.25",
            BlockQuery(image="docker.io/library/nginx:1.26"),
            False,
        ),
        (
            "image",
            "docker.io/library/nginx:1.25",
            BlockQuery(image="docker.io/library/nginx:1.25"),
            True,
        ),
        ("image", "r.io/a/b@sha256:ab", BlockQuery(image="r.io/a/b@sha256:ab"), True),
        ("image", "localhost:5000/a/b", BlockQuery(image="localhost:5000/a/b:v1"), True),
        (
            "image",
            "r.example.com/team/app",
            BlockQuery(url="https://r.example.com/v2/team/app/blobs/sha256:00"),
            True,
        ),
        (
            "image",
            "r.example.com/team/app:v2",
            BlockQuery(url="https://r.example.com/v2/team/app/manifests/v2"),
            True,
        ),
        ("application", "trainer", BlockQuery(url="https://x/a", application="trainer"), True),
        ("application", "trainer", BlockQuery(url="https://x/a", application="trainer2"), False),
        ("tag", "nightly", BlockQuery(url="https://x/a", tag="nightly"), True),
        ("tag", "nightly", BlockQuery(url="https://x/a"), False),
    ],
)
def test_rule_matches(kind: str, pattern: str, query: BlockQuery, blocked: bool) -> None:
    rule = BlockRule(id=1, kind=kind, pattern=pattern, reason="r")
    assert (find_blocking_rule([rule], query, NOW) == rule) is blocked


def test_expired_rules_match_nothing_and_the_lowest_id_wins() -> None:
    expired = BlockRule(1, "tag", "t", "old", until=datetime(2026, 1, 1, tzinfo=UTC))
    later = BlockRule(7, "tag", "t", "second")
    first = BlockRule(3, "application", "app", "first")
    query = BlockQuery(url="https://x/a", application="app", tag="t")
    assert find_blocking_rule([later, expired, first], query, NOW) == first
    assert find_blocking_rule([expired], query, NOW) is None


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            BlockRule(12, "repo", "hf://org/model", "CVE-2026-1234",
                      until=datetime(2026, 12, 31, 12, tzinfo=UTC)),
            "hf://org/model is blocked by rule 12 (CVE-2026-1234, until 2026-12-31)",
        ),
        (BlockRule(3, "repo", "hf://o/m", "leak"), "hf://o/m is blocked by rule 3 (leak)"),
        (BlockRule(4, "repo", "hf://o/m", ""), "hf://o/m is blocked by rule 4"),
    ],
)  # fmt: skip
def test_blocked_message(rule: BlockRule, message: str) -> None:
    assert blocked_message(rule, rule.pattern) == message


def test_the_blocked_message_is_one_short_line_whatever_the_url_and_reason() -> None:
    rule = BlockRule(7, "url", "https://h/*", "line one\nline two\r\n" + "x" * 5000)
    url = "https://h/" + "a" * 70_000
    message = blocked_message(rule, url)
    assert "\n" not in message
    assert "\r" not in message
    assert len(message) < 500
    assert message.startswith("https://h/aaa")
    assert "... is blocked by rule 7 (line one line two xxx" in message


@pytest.mark.parametrize(
    ("kind", "pattern", "valid"),
    [
        ("url", "https://x/*", True),
        ("url", " https://x/*", False),
        ("repo", "hf://org/model", True),
        ("repo", "hf://org", False),
        ("repo", "https://huggingface.co/org/model", False),
        ("image", "docker.io/library/nginx:1", True),
        ("image", "nginx", False),
        ("colour", "red", False),
        ("tag", "", False),
    ],
)
def test_validate_pattern(kind: str, pattern: str, valid: bool) -> None:
    assert (validate_pattern(kind, pattern) is None) is valid
