"""``dfget s3://...`` as a subprocess against a real moto_server."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from damselfly.testing.moto import MotoServer

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as server:
        yield server


def s3_env(dfget, moto: MotoServer) -> dict[str, str]:
    env = dict(dfget.env)
    env.update(
        AWS_ENDPOINT_URL=moto.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_REGION="us-east-1",
    )
    return env


async def test_single_object(tmp_path, dfget, moto):
    data = os.urandom(3 * MiB + 17)
    moto.create_bucket("models")
    moto.put_object("models", "llama/weights.bin", data)
    dfget.env = s3_env(dfget, moto)
    out = tmp_path / "weights.bin"
    result = await dfget.run(
        "s3://models/llama/weights.bin", "-O", str(out), "--piece-length", "1MiB"
    )
    assert result.code == 0, result.stderr
    assert out.read_bytes() == data


async def test_recursive_prefix_with_globs(tmp_path, dfget, moto):
    files = {
        "repo/config.json": b"{}",
        "repo/model.safetensors": os.urandom(MiB),
        "repo/sub/tokenizer.json": b"[1]",
        "repo/notes.md": b"skip me",
        "other/x.json": b"not below the prefix",
    }
    moto.create_bucket("tree")
    moto.put_objects("tree", files)
    dfget.env = s3_env(dfget, moto)
    out = tmp_path / "repo"
    result = await dfget.run(
        "s3://tree/repo/", "-O", str(out), "-r", "-I", "*.json", "-I", "*.safetensors"
    )
    assert result.code == 0, result.stderr
    got = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert got == ["config.json", "model.safetensors", "sub/tokenizer.json"]
    assert (out / "model.safetensors").read_bytes() == files["repo/model.safetensors"]


async def test_missing_key_and_bad_credentials_are_one_line(tmp_path, dfget, moto):
    moto.create_bucket("empty")
    dfget.env = s3_env(dfget, moto)
    result = await dfget.run("s3://empty/nope.bin", "-O", str(tmp_path / "x"))
    assert result.code == 1
    lines = [line for line in result.stderr.splitlines() if line.startswith("dfget:")]
    assert len(lines) == 1
    assert "s3://empty/nope.bin" in lines[0]
    assert "testing" not in result.stderr  # the secret never shows
    assert not (tmp_path / "x").exists()
