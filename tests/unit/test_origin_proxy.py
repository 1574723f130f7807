"""``OriginProxies``: which proxy an origin request takes, from the environment."""

from __future__ import annotations

import pytest
from yarl import URL

from damselfly.transport.origin_proxy import OriginProxies


def proxy(env: dict[str, str], url: str) -> str | None:
    chosen = OriginProxies.from_env(env).proxy_for(URL(url))
    return None if chosen is None else str(chosen)


def test_scheme_picks_the_variable_and_all_proxy_fills_in():
    env = {"HTTPS_PROXY": "http://p1:3128", "http_proxy": "p2:8080"}
    assert proxy(env, "https://huggingface.co/x") == "http://p1:3128"
    assert proxy(env, "http://example.org/") == "http://p2:8080"
    assert proxy({"ALL_PROXY": "http://p3:1"}, "https://h/") == "http://p3:1"
    assert proxy({}, "https://h/") is None


@pytest.mark.parametrize(
    ("no_proxy", "url", "direct"),
    [
        ("*", "https://hub.example/", True),
        ("example.com", "https://cdn.example.com/a", True),
        (".example.com", "https://example.com/a", True),
        ("example.com", "https://notexample.com/a", False),
        ("10.0.0.0/8, 192.168.1.5", "http://10.2.3.4/", True),
        ("192.168.1.5", "http://192.168.1.6/", False),
        ("hub.local:8443", "https://hub.local:8443/", True),
        ("hub.local:8443", "https://hub.local/", False),
        ("", "https://hub.example/", False),
    ],
)
def test_no_proxy(no_proxy, url, direct):
    env = {"HTTPS_PROXY": "http://proxy:3128", "HTTP_PROXY": "http://proxy:3128"}
    env["NO_PROXY"] = no_proxy
    assert (proxy(env, url) is None) is direct


@pytest.mark.parametrize(
    "own", ["http://127.0.0.1:65001", "http://localhost:65001", "http://[::1]:65001"]
)
def test_the_daemons_own_proxy_is_never_used(own):
    assert proxy({"HTTPS_PROXY": own}, "https://huggingface.co/") is None


def test_own_proxy_named_explicitly_and_override():
    env = {"HTTPS_PROXY": "http://10.0.0.1:3128", "DAMSELFLY_OWN_PROXY": "10.0.0.1:3128"}
    assert proxy(env, "https://hub/") is None
    env = {"HTTPS_PROXY": "http://p:1", "DAMSELFLY_ORIGIN_PROXY": "http://q:2"}
    assert proxy(env, "https://hub/") == "http://q:2"
    env["DAMSELFLY_ORIGIN_PROXY"] = "none"
    assert proxy(env, "https://hub/") is None


def test_credentials_stay_in_the_url_for_the_session_to_split():
    chosen = OriginProxies.from_env({"HTTPS_PROXY": "http://u:pw@p:1"}).proxy_for(URL("https://h"))
    assert chosen is not None
    bare = chosen.with_user(None)
    assert (chosen.user, chosen.password, bare.user, bare.host, bare.port) == (
        "u",
        "pw",
        None,
        "p",
        1,
    )
