"""Pure parts of the Hugging Face backend: routes, tokens, header values, the memo."""

from __future__ import annotations

import asyncio

import pytest

from damselfly.backends.hf_api import (
    HubRoutes,
    normalize_endpoint,
    normalize_etag,
    origin,
    resolve_hf_token,
    signed_url_expiry,
    token_fingerprint,
)
from damselfly.backends.hf_memo import TtlMemo
from damselfly.config.secret_files import SecretFileModeError
from damselfly.core.errors import InvalidUrlError
from damselfly.core.safe_paths import unsafe_path_reason


def test_routes_quote_revisions_and_keep_the_prefix():
    routes = HubRoutes("http://mirror:8080/hf", "datasets", "o/r")
    assert routes.revision_info("refs/pr/1") == (
        "http://mirror:8080/hf/api/datasets/o/r/revision/refs%2Fpr%2F1"
    )
    assert routes.tree("c" * 40, "a b/c") == (
        f"http://mirror:8080/hf/api/datasets/o/r/tree/{'c' * 40}/a%20b%2Fc"
        "?recursive=true&expand=false"
    )
    assert routes.resolve("c" * 40, "a b/#c") == (
        f"http://mirror:8080/hf/datasets/o/r/resolve/{'c' * 40}/a%20b/%23c"
    )
    models = HubRoutes("https://huggingface.co", "models", "o/r")
    assert models.resolve("main", "x") == "https://huggingface.co/o/r/resolve/main/x"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, "https://huggingface.co"),
        ("http://127.0.0.1:9/", "http://127.0.0.1:9"),
        (" https://h/prefix/ ", "https://h/prefix"),
    ],
)
def test_normalize_endpoint(raw, expected):
    assert normalize_endpoint(raw) == expected


@pytest.mark.parametrize("raw", ["ftp://h", "h.example", "https://u:p@h", "https://h/?x=1"])
def test_normalize_endpoint_rejects(raw):
    with pytest.raises(InvalidUrlError) as caught:
        normalize_endpoint(raw)
    assert "u:p" not in str(caught.value)


def test_origin_uses_default_ports():
    assert origin("https://H.example/x") == origin("https://h.example:443/y")
    assert origin("http://127.0.0.1:1") != origin("http://127.0.0.1:2")


@pytest.mark.parametrize(
    ("value", "expected"),
    [('W/"AbC"', "abc"), ('"abc"', "abc"), ("abc", "abc"), ("", None), (None, None)],
)
def test_normalize_etag(value, expected):
    assert normalize_etag(value) == expected


def test_signed_url_expiry():
    assert signed_url_expiry("https://cdn/x?Expires=1700000000&Signature=s") == 1_700_000_000
    amz = "https://cdn/x?X-Amz-Date=20240101T000000Z&X-Amz-Expires=3600&X-Amz-Signature=s"
    assert signed_url_expiry(amz) == 1_704_067_200 + 3600
    assert signed_url_expiry("https://cdn/x?X-Amz-Date=bad&X-Amz-Expires=3600") is None
    assert signed_url_expiry("https://cdn/x") is None


def test_token_order(tmp_path):
    home = tmp_path / "hfhome"
    env = {"HF_HOME": str(home)}
    assert resolve_hf_token(None, env) is None
    home.mkdir()
    _secret(home / "token", "from-file\n")  # read at call time, not cached
    assert resolve_hf_token(None, env) == "from-file"
    assert resolve_hf_token(None, {**env, "HF_TOKEN": "from-env"}) == "from-env"
    assert resolve_hf_token("explicit", {**env, "HF_TOKEN": "from-env"}) == "explicit"
    assert resolve_hf_token("", {**env, "HF_TOKEN": " "}) == "from-file"


def test_token_file_locations(tmp_path):
    (tmp_path / ".cache" / "huggingface").mkdir(parents=True)
    _secret(tmp_path / ".cache" / "huggingface" / "token", "default-home")
    assert resolve_hf_token(None, {"HOME": str(tmp_path)}) == "default-home"
    _secret(tmp_path / "elsewhere", "explicit-path")
    env = {"HOME": str(tmp_path), "HF_TOKEN_PATH": str(tmp_path / "elsewhere")}
    assert resolve_hf_token(None, env) == "explicit-path"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_token_file_others_may_read_is_refused_as_ssh_refuses_a_key(tmp_path, mode):
    path = tmp_path / "token"
    _secret(path, "hf_LooseFileToken")
    path.chmod(mode)
    with pytest.raises(SecretFileModeError) as refused:
        resolve_hf_token(None, {"HF_TOKEN_PATH": str(path)})
    assert str(refused.value) == (
        f"{path}: refusing to use a secret file readable by group or others "
        f"(mode {mode:04o}; run chmod 600 {path})"
    )  # one line, no token
    assert resolve_hf_token(None, {"HF_TOKEN_PATH": str(path), "HF_TOKEN": "env"}) == "env"
    path.chmod(0o400)
    assert resolve_hf_token(None, {"HF_TOKEN_PATH": str(path)}) == "hf_LooseFileToken"


def _secret(path, text: str) -> None:
    """A token file as huggingface_hub's ``login`` writes it: mode 0600."""
    path.write_text(text)
    path.chmod(0o600)


def test_token_fingerprint_hides_the_token():
    assert token_fingerprint(None) == token_fingerprint("") == ""
    fingerprint = token_fingerprint("hf_secret")
    assert "hf_secret" not in fingerprint
    assert fingerprint != token_fingerprint("hf_other")


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("../x", "'..'"),
        ("/abs", "absolute"),
        ("a/./b", "'.'"),
        ("a//b", "empty"),
        ("a/", "empty"),
        ("a\\b", "backslash"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("", "empty"),
    ],
)
def test_unsafe_paths(path, problem):
    reason = unsafe_path_reason(path)
    assert reason is not None
    assert problem in reason


def test_safe_paths():
    assert unsafe_path_reason(".gitattributes") is None
    assert unsafe_path_reason("a/b c/d..e.txt") is None


async def test_memo_loads_once_for_concurrent_callers_and_expires():
    now = [100.0]
    memo: TtlMemo[str, str] = TtlMemo(lambda: now[0])
    loads = 0

    async def loader() -> tuple[str, float]:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0)
        return f"v{loads}", now[0] + 10

    values = await asyncio.gather(*(memo.load("k", loader) for _ in range(8)))
    assert values == ["v1"] * 8
    assert loads == 1
    now[0] += 10
    assert await memo.load("k", loader) == "v2"
    memo.forget("k", "v1")  # stale value: ignored
    assert memo.get("k") == "v2"
    memo.forget("k")
    assert memo.get("k") is None


async def test_memo_failed_load_stores_nothing():
    memo: TtlMemo[str, str] = TtlMemo(lambda: 0.0)

    async def failing() -> tuple[str, float]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await memo.load("k", failing)
    assert len(memo) == 0


def test_memo_prunes_when_full():
    memo: TtlMemo[int, int] = TtlMemo(lambda: 0.0, max_entries=4)
    for i in range(10):
        memo._put(i, i, 100.0)
    assert len(memo) <= 4
    assert memo.get(9) == 9
