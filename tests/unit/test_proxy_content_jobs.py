"""Which job a proxied content GET becomes, and the daemon's proxy settings and CLI."""

from __future__ import annotations

import hashlib

import pytest
from yarl import URL

from damselfly.cli import dfdaemon
from damselfly.config.daemon import DaemonSettings, load
from damselfly.core.digests import Digest
from damselfly.core.errors import UsageError
from damselfly.core.ids import task_id_for_content
from damselfly.core.pieces import choose_piece_length
from damselfly.daemon.proxy.content_jobs import bearer_token, content_job, hf_resolve, ms_file
from damselfly.daemon.proxy.engine_fetcher import keyed_job
from damselfly.daemon.proxy.links import LinkedFile
from damselfly.download.credentials import needs_credentials, private_task_id
from damselfly.transport.origin_proxy import OriginProxies

SHA = hashlib.sha256(b"weights").hexdigest()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://huggingface.co/acme/m/resolve/main/config.json",
            ("hf://acme/m/config.json", "main", "https://huggingface.co"),
        ),
        (
            "https://hf.co/datasets/acme/d/resolve/abc123/data/train%20one.parquet",
            ("hf://datasets/acme/d/data/train one.parquet", "abc123", "https://hf.co"),
        ),
        (
            "http://127.0.0.1:9/acme/m/resolve/refs%2Fpr%2F1/w.bin",
            ("hf://acme/m/w.bin", "refs/pr/1", "http://127.0.0.1:9"),
        ),
        ("https://huggingface.co/gpt2/resolve/main/config.json", None),  # no owner
        ("https://huggingface.co/acme/m/resolve/main/../x", None),
        ("https://huggingface.co/acme/m/blob/main/config.json", None),
        ("https://huggingface.co/acme/m/resolve/main/f?download=1", None),
        ("https://www.modelscope.cn/acme/m/resolve/master/f.bin", None),
        ("https://cdn-lfs.hf.co/repos/aa/bb/abc", None),
    ],
)
def test_hf_resolve_urls(url, expected):
    assert hf_resolve(url) == expected


def test_a_resolve_url_becomes_the_dfget_hf_job_with_the_clients_token_only():
    planned = content_job("https://hub.test/acme/m/resolve/c0ffee/w.bin", "Bearer hf_abc", None)
    assert planned.kind == "hf"
    assert str(planned.job.url) == "hf://acme/m/w.bin"
    params = dict(planned.job.options.params)
    assert params["hf_revision"] == "c0ffee"
    assert params["hf_endpoint"] == "https://hub.test"
    assert params["hf_token"] == "hf_abc"
    anonymous = content_job("https://hub.test/acme/m/resolve/c0ffee/w.bin", None, None)
    assert "hf_token" not in dict(anonymous.job.options.params)  # never the daemon's own


def test_a_cdn_url_the_hub_gave_an_anonymous_client_is_the_public_dfget_hf_job():
    linked = LinkedFile("https://hub.test/acme/m/resolve/c/w.bin", SHA, 10 * 2**20, "c", False)
    signed = "https://cdn.test/repos/x?Expires=1&Signature=s&Key-Pair-Id=k"
    planned = content_job(signed, None, linked)
    assert (planned.kind, str(planned.job.url), planned.job.task_id) == (
        "hf",
        "hf://acme/m/w.bin",
        None,  # named as dfget names it, from the hub's answer
    )
    params = dict(planned.job.options.params)
    assert (params["hf_revision"], params["hf_endpoint"]) == ("c", "https://hub.test")
    assert not needs_credentials(planned.job)  # public: seeds and peers may serve it
    assert "Signature" not in str(planned.job.url)


def test_a_linked_cdn_url_is_named_like_dfget_names_the_lfs_file():
    linked = LinkedFile("https://hub.test/acme/m/resolve/c/w.bin", SHA, 10 * 2**20, "c", True)
    signed = "https://cdn.test/repos/x?Expires=1&Signature=s&Key-Pair-Id=k"
    planned = content_job(signed, None, linked)
    assert needs_credentials(planned.job)  # the hub gave it to a token holder: private
    expected = task_id_for_content(Digest("sha256", SHA), choose_piece_length(10 * 2**20))
    assert (planned.kind, planned.expected_task_id, planned.job.task_id) == (
        "linked",
        expected,
        expected,
    )
    assert planned.job.expected_digest == Digest("sha256", SHA)
    assert planned.job.expected_length == 10 * 2**20


def test_a_private_linked_task_takes_the_clusters_private_id_and_a_public_one_does_not():
    url = "https://cdn.test/repos/x?Expires=1&Signature=s&Key-Pair-Id=k"
    private = LinkedFile("https://hub.test/acme/m/resolve/c/w.bin", SHA, 2**20, "c", True)
    job = content_job(url, None, private).job
    assert job.task_id is not None
    assert keyed_job(job, b"k" * 32).task_id == private_task_id(job.task_id, b"k" * 32)
    assert keyed_job(job, None) is job  # no cluster secret: the public id
    blob = LinkedFile("https://registry.test/v2/a/blobs/sha256:x", SHA, 2**20, None, False)
    public = content_job("https://registry.test/v2/a/blobs/sha256:x", None, blob).job
    assert keyed_job(public, b"k" * 32) is public


def test_other_urls_carry_the_authorization_to_their_origin():
    planned = content_job("https://files.test/a/b.bin", "Basic eDp5", None)
    assert planned.kind == "url"
    assert planned.job.options.headers == (("Authorization", "Basic eDp5"),)
    with pytest.raises(UsageError):
        content_job("file:///etc/passwd", None, None)
    with pytest.raises(UsageError):  # a hub credential that is not a bearer token
        content_job("https://hub.test/acme/m/resolve/main/w.bin", "Basic eDp5", None)


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), (None, None)],
)
def test_bearer_token(header, token):
    assert bearer_token(header) == token


def test_the_proxy_runs_by_default_on_loopback_and_can_be_moved_or_disabled():
    assert DaemonSettings().proxy.enabled
    assert DaemonSettings().proxy.listen == "127.0.0.1:65001"
    args = dfdaemon.build_parser().parse_args(["--proxy-listen", "127.0.0.1:0", "--no-proxy"])
    settings = load(None, {}, dfdaemon.overrides(args))
    assert (settings.proxy.listen, settings.proxy.enabled) == ("127.0.0.1:0", False)
    from_env = load(None, {"DAMSELFLY_DAEMON_PROXY": '{"listen": "127.0.0.1:7"}'})
    assert from_env.proxy.listen == "127.0.0.1:7"


def test_dfdaemon_ca_show_prints_path_and_fingerprint(tmp_path, capsys):
    assert dfdaemon.main(["ca", "show", "--storage-dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out
    assert f"path: {tmp_path / 'proxy' / 'ca.crt'}" in first
    assert "sha256: " in first
    assert (tmp_path / "proxy" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert dfdaemon.main(["ca", "show", "--storage-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == first  # the same CA, not a new one


def test_dfdaemon_names_its_own_proxy_so_origin_requests_never_loop_through_it():
    settings = load(None, {"DAMSELFLY_DAEMON_PROXY": '{"listen": "127.0.0.1:7001"}'})
    env = dfdaemon.own_proxy_env(settings, {"DAMSELFLY_OWN_PROXY": "10.0.0.1:3128"})
    assert env == {"DAMSELFLY_OWN_PROXY": "10.0.0.1:3128 127.0.0.1:7001"}
    assert dfdaemon.own_proxy_env(settings, env) == env  # once
    proxies = OriginProxies.from_env({"HTTPS_PROXY": "http://127.0.0.1:7001", **env})
    assert proxies.proxy_for(URL("https://huggingface.co/x")) is None
    corporate = OriginProxies.from_env({"HTTPS_PROXY": "http://proxy.corp:3128", **env})
    assert corporate.proxy_for(URL("https://huggingface.co/x")) == URL("http://proxy.corp:3128")
    off = load(None, {}, dfdaemon.overrides(dfdaemon.build_parser().parse_args(["--no-proxy"])))
    assert dfdaemon.own_proxy_env(off, {}) == {}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://modelscope.cn/api/v1/models/acme/m/repo?Revision=master&FilePath=w%2Fa.bin",
            ("modelscope://acme/m/w/a.bin", "master", "https://modelscope.cn"),
        ),
        (
            "http://127.0.0.1:9/pre/api/v1/datasets/acme/d/repo?FilePath=train.csv",
            ("modelscope://datasets/acme/d/train.csv", "master", "http://127.0.0.1:9/pre"),
        ),
        ("https://modelscope.cn/api/v1/models/acme/m/repo/files?Revision=master", None),
        ("https://modelscope.cn/api/v1/models/acme/m/repo?Revision=master", None),  # no path
        ("https://modelscope.cn/api/v1/models/acme/m/repo?FilePath=..%2Fx", None),
        ("https://modelscope.cn/api/v1/models/acme/m/repo?FilePath=a&Extra=1", None),
        ("https://modelscope.cn/api/v1/spaces/acme/m/repo?FilePath=a", None),
    ],
)
def test_ms_file(url, expected):
    assert ms_file(url) == expected


def test_a_modelscope_file_with_a_token_is_the_dfget_job_that_may_be_public():
    url = "https://modelscope.cn/api/v1/models/acme/m/repo?Revision=v1&FilePath=w.bin"
    planned = content_job(url, "Bearer ms-secret", None)
    assert planned.kind == "modelscope"
    assert str(planned.job.url.redacted()) == "modelscope://acme/m/w.bin"
    assert planned.job.options.param("ms_token") == "ms-secret"
    assert planned.job.options.param("ms_revision") == "v1"
    assert planned.job.try_public
    assert not content_job(url, None, None).job.try_public
