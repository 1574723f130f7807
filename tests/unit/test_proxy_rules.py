"""Proxy settings, rule matching, content classification and header hygiene (pure)."""

from __future__ import annotations

import pytest
import yaml
from pydantic import Field, ValidationError

from damselfly.config.base import Section, example_yaml
from damselfly.config.proxy import ProxyRule, ProxySettings
from damselfly.daemon.proxy.headers import end_to_end, split_credentials
from damselfly.daemon.proxy.links import LinkedFile, LinkMemo
from damselfly.daemon.proxy.mesh import MeshRequest, parse_range
from damselfly.daemon.proxy.routing import RuleSet, is_content, upgrade_scheme

ISSUE_YAML = r"""
proxies:
  - regx: ^https://huggingface\.co/.*
    use_https: true
    direct: false
    certs:
      hosts: [huggingface.co]
"""

ARTICLE_YAML = r"""
proxies:
  - regx: ^https://huggingface\.co/.*
    use_https: true
    direct: false
    certs:
      - hosts:
          - huggingface.co
  - regx: ^https://modelscope\.cn/.*
    use_https: true
    direct: false
    certs:
      - hosts:
          - modelscope.cn
"""


@pytest.mark.parametrize("text", [ISSUE_YAML, ARTICLE_YAML])
def test_the_published_yaml_shapes_are_accepted_as_written(text):
    settings = ProxySettings.model_validate(yaml.safe_load(text))
    first = settings.proxies[0]
    assert first.use_https
    assert not first.direct
    assert first.certs.hosts == ["huggingface.co"]
    assert RuleSet(settings.proxies).intercepts("HuggingFace.co")


def test_defaults_cover_the_hubs_and_their_cdns():
    rules = RuleSet(ProxySettings().proxies)
    for host in ("huggingface.co", "cdn-lfs.hf.co", "cdn-lfs-us-1.hf.co", "modelscope.cn"):
        assert rules.intercepts(host), host
        assert rules.match(f"https://{host}/x") is not None, host
    assert not rules.intercepts("transfer.xethub.hf.co")  # Xet CAS traffic is tunnelled
    assert not rules.intercepts("example.com")


def test_first_matching_rule_decides():
    rules = RuleSet(
        [
            ProxyRule(regx=r"^https://h/api/", direct=True, name="api"),
            ProxyRule(regx=r"^https://h/", name="all"),
        ]
    )
    assert rules.match("https://h/api/models").label == "api"
    assert rules.match("https://h/org/repo").label == "all"
    assert rules.match("https://other/") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"proxies": [{"regx": "("}]},
        {"proxies": [{"regx": "x", "unknown": 1}]},
        {"ca_cert": "/x.crt"},
        {"listen": "nonsense"},
    ],
)
def test_invalid_settings_are_refused(bad):
    with pytest.raises(ValidationError):
        ProxySettings.model_validate(bad)


@pytest.mark.parametrize(
    ("method", "url", "content"),
    [
        ("GET", "https://huggingface.co/org/m/resolve/main/model.safetensors", True),
        ("GET", "https://cdn-lfs.hf.co/repos/aa/bb/sha?Expires=1&Signature=x", True),
        ("HEAD", "https://huggingface.co/org/m/resolve/main/model.safetensors", False),
        ("GET", "https://huggingface.co/api/models/org/m/revision/main", False),
        ("GET", "https://huggingface.co/api/models/org/m/tree/main?recursive=1", False),
        (
            "GET",
            "https://modelscope.cn/api/v1/models/o/m/repo?Revision=master&FilePath=a.bin",
            True,
        ),
        ("GET", "https://modelscope.cn/api/v1/models/o/m/repo/files?Revision=master", False),
        ("POST", "https://huggingface.co/org/m/resolve/main/x", False),
    ],
)
def test_content_versus_metadata(method, url, content):
    assert is_content(method, url) is content


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        (None, None),
        ("bytes=0-99", (0, 99)),
        ("bytes=100-", (100, None)),
        ("bytes=-500", (None, 500)),
        ("bytes=0-1,5-6", "multi"),
        ("items=0-1", "multi"),
        ("bytes=9-1", "multi"),
        ("bytes=-", "multi"),
    ],
)
def test_parse_range(header, parsed):
    assert parse_range(header) == parsed


def test_hop_by_hop_and_connection_listed_headers_are_dropped():
    headers = [
        ("Connection", "close, X-Private"),
        ("X-Private", "1"),
        ("Proxy-Authorization", "Basic x"),
        ("Transfer-Encoding", "chunked"),
        ("ETag", '"e"'),
        ("X-Linked-Size", "5"),
    ]
    assert end_to_end(headers) == [("ETag", '"e"'), ("X-Linked-Size", "5")]


def test_credentials_are_split_off_and_masked():
    kept, secret = split_credentials([("Authorization", "Bearer tok"), ("Cookie", "c"), ("A", "1")])
    assert kept == [("A", "1")]
    assert secret is not None
    assert secret.get_secret_value() == "Bearer tok"
    request = MeshRequest("https://h/f", tuple(kept), None, secret)
    assert "tok" not in repr(request)
    assert "tok" not in str(secret)


def test_use_https_upgrades_the_origin_scheme():
    rules = RuleSet([ProxyRule(regx=r"^http://mirror/", use_https=True)])
    assert upgrade_scheme("http://mirror/x", rules.match("http://mirror/x")) == "https://mirror/x"
    assert upgrade_scheme("http://other/x", None) == "http://other/x"


def test_the_link_memo_remembers_hub_redirects_until_they_expire():
    now = [0.0]
    memo = LinkMemo(capacity=2, ttl=10, clock=lambda: now[0])
    cdn = "https://cdn.example/repos/x?Signature=s"
    redirect = [
        ("Location", cdn),
        ("X-Linked-Etag", '"abc123"'),
        ("X-Linked-Size", "42"),
        ("X-Repo-Commit", "c0ffee"),
    ]
    memo.observe("https://hub/org/m/resolve/main/w.bin?x=1", 302, redirect, authorized=False)
    memo.observe("https://hub/org/m/resolve/main/other", 200, redirect, authorized=False)
    linked = memo.lookup(cdn)
    resolve = "https://hub/org/m/resolve/main/w.bin"
    assert linked == LinkedFile(resolve, "abc123", 42, "c0ffee", authorized=False)
    memo.observe("https://hub/org/m/resolve/main/w.bin", 302, redirect, authorized=True)
    assert memo.lookup(cdn) == LinkedFile(resolve, "abc123", 42, "c0ffee", authorized=True)
    now[0] = 11
    assert memo.lookup(cdn) is None
    for index in range(3):
        headers = [("Location", f"/{index}"), ("X-Linked-Etag", "e")]
        memo.observe("https://hub/f", 302, headers, authorized=False)
    assert memo.lookup("https://hub/0") is None  # the oldest was dropped at capacity
    assert memo.lookup("https://hub/2") is not None


def test_the_example_config_round_trips():
    class Daemon(Section):
        """A daemon's settings with the proxy section."""

        proxy: ProxySettings = Field(ProxySettings(), description="Proxy.")

    rendered = yaml.safe_load(example_yaml(Daemon))
    assert Daemon.model_validate(rendered).proxy == ProxySettings()
