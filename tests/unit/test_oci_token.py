"""Anonymous registry tokens: the challenge, the realm rules, the realm's answer, the cache."""

from __future__ import annotations

import json

import pytest

from damselfly.backends.oci_token import (
    MAX_ANSWER_LENGTH,
    AnonymousTokens,
    BearerChallenge,
    parse_challenge,
    read_answer,
    read_token_answer,
    realm_problem,
)

REALM = "https://auth.docker.io/token"
DOCKER = (
    'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
    'scope="repository:library/ubuntu:pull"'
)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            DOCKER,
            BearerChallenge(
                "https://auth.docker.io/token",
                "registry.docker.io",
                "repository:library/ubuntu:pull",
            ),
        ),
        ('bearer realm="https://r/t"', BearerChallenge("https://r/t")),
        ("Bearer realm=https://r/t,service=s", BearerChallenge("https://r/t", "s")),
        ('Basic realm="registry"', None),
        ('Bearer service="s"', None),
        ("", None),
        (None, None),
    ],
)
def test_parse_challenge(header: str | None, expected: BearerChallenge | None) -> None:
    assert parse_challenge(header) == expected


def test_token_url_carries_service_and_scope_only() -> None:
    challenge = parse_challenge(DOCKER)
    assert challenge is not None
    assert challenge.token_url() == (
        "https://auth.docker.io/token?service=registry.docker.io"
        "&scope=repository%3Alibrary%2Fubuntu%3Apull"
    )
    assert BearerChallenge("https://r/t?x=1", "s").token_url() == "https://r/t?x=1&service=s"


@pytest.mark.parametrize(
    ("realm", "registry", "allowed"),
    [
        ("https://auth.docker.io/token", "https://registry-1.docker.io/v2/x", True),
        ("http://auth.example/token", "https://registry.example/v2/x", False),
        ("http://127.0.0.1:5001/token", "http://127.0.0.1:5000/v2/x", True),
        ("https://127.0.0.1:5001/token", "http://127.0.0.1:5000/v2/x", True),
        ("file:///etc/passwd", "http://127.0.0.1:5000/v2/x", False),
        ("ftp://auth.example/token", "https://registry.example/v2/x", False),
        ("https://user:pw@auth.example/token", "https://registry.example/v2/x", False),
        ("https:///token", "https://registry.example/v2/x", False),
        ("https://auth.example:99999/token", "https://registry.example/v2/x", False),
        ("/token", "https://registry.example/v2/x", False),
        ("https://169.254.169.254/latest", "https://registry.example/v2/x", False),
        ("https://127.0.0.1:9/token", "https://registry.example/v2/x", False),
        ("https://localhost/token", "https://registry.example/v2/x", False),
        ("https://[::1]/token", "https://registry.example/v2/x", False),
        ("https://10.0.0.6/token", "https://10.0.0.5/v2/x", True),
        ("https://10.0.0.6/token", "https://localhost:5000/v2/x", True),
    ],
)
def test_realm_rules(realm: str, registry: str, allowed: bool) -> None:
    assert (realm_problem(realm, registry) is None) is allowed


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"token": "abc", "expires_in": 300}', ("abc", 300.0)),
        (b'{"access_token": "abc"}', ("abc", 60.0)),
        (b'{"token": "abc", "expires_in": true}', ("abc", 60.0)),
        (b'{"token": "abc", "expires_in": -5}', ("abc", 60.0)),
        (b'{"token": "a b"}', None),  # not a header-safe value
        (b'{"token": "a\\r\\nX-Evil: 1"}', None),
        (b'{"token": ""}', None),
        (b'{"token": 5}', None),
        (b"[]", None),
        (b"not json", None),
        (b"\xff\xfe", None),
        (json.dumps({"token": "x" * 20_000}).encode(), None),
    ],
)
def test_read_token_answer(body: bytes, expected: tuple[str, float] | None) -> None:
    assert read_token_answer(body) == expected


async def test_read_answer_refuses_an_oversized_answer() -> None:
    def reader(data: bytes):
        view = memoryview(data)

        async def read(n: int) -> bytes:
            nonlocal view
            chunk, view = bytes(view[: min(n, 1000)]), view[min(n, 1000) :]
            return chunk

        return read

    assert await read_answer(reader(b"x" * 5000)) == b"x" * 5000
    assert await read_answer(reader(b"x" * (MAX_ANSWER_LENGTH + 1))) == b""


class Realm:
    def __init__(self, *answers: tuple[int, bytes]) -> None:
        self.answers = list(answers)
        self.asked: list[str] = []

    async def fetch(self, url: str) -> tuple[int, bytes]:
        self.asked.append(url)
        return self.answers.pop(0)


async def test_tokens_are_cached_per_challenge_until_shortly_before_expiry() -> None:
    now = [1000.0]
    tokens = AnonymousTokens(clock=lambda: now[0])
    realm = Realm((200, b'{"token": "t1", "expires_in": 100}'), (200, b'{"token": "t2"}'))
    challenge = BearerChallenge("https://auth.example/token", "reg", "repository:a:pull")
    registry = "https://registry.example/v2/a/blobs/sha256:00"
    assert await tokens.token(challenge, registry, realm.fetch) == "t1"
    now[0] += 89  # within 90 % of its lifetime
    assert await tokens.token(challenge, registry, realm.fetch) == "t1"
    assert len(realm.asked) == 1
    now[0] += 2
    assert await tokens.token(challenge, registry, realm.fetch) == "t2"
    assert realm.asked == [challenge.token_url()] * 2


async def test_other_scopes_get_their_own_tokens() -> None:
    tokens = AnonymousTokens()
    realm = Realm((200, b'{"token": "a"}'), (200, b'{"token": "b"}'))
    registry = "https://registry.example/v2/"
    first = BearerChallenge("https://auth.example/token", "reg", "repository:a:pull")
    second = BearerChallenge("https://auth.example/token", "reg", "repository:b:pull")
    assert await tokens.token(first, registry, realm.fetch) == "a"
    assert await tokens.token(second, registry, realm.fetch) == "b"
    assert await tokens.token(first, registry, realm.fetch) == "a"


async def test_a_refused_or_unusable_answer_gives_no_token_and_is_not_cached() -> None:
    tokens = AnonymousTokens()
    realm = Realm((401, b'{"token": "x"}'), (200, b"junk"), (200, b'{"token": "ok"}'))
    challenge = BearerChallenge("https://auth.example/token")
    registry = "https://registry.example/v2/"
    assert await tokens.token(challenge, registry, realm.fetch) is None
    assert await tokens.token(challenge, registry, realm.fetch) is None
    assert await tokens.token(challenge, registry, realm.fetch) == "ok"


async def test_a_forbidden_realm_is_never_asked() -> None:
    tokens = AnonymousTokens()
    realm = Realm()
    challenge = BearerChallenge("http://auth.example/token")  # http for an https registry
    assert await tokens.token(challenge, "https://registry.example/v2/", realm.fetch) is None
    assert realm.asked == []


async def test_the_cache_is_bounded() -> None:
    tokens = AnonymousTokens(max_entries=3)
    realm = Realm(*[(200, b'{"token": "t"}')] * 10)
    for index in range(10):
        challenge = BearerChallenge("https://auth.example/token", scope=f"repository:{index}:pull")
        await tokens.token(challenge, "https://registry.example/v2/", realm.fetch)
    assert len(tokens) <= 3
