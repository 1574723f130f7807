"""Digests: parsing ``alg:hex``, incremental hashers, piece digests, git blob ids."""

from __future__ import annotations

import hashlib
import random
import zlib

import blake3
import pytest

from damselfly.core.digests import (
    SUPPORTED_ALGORITHMS,
    Digest,
    git_blob_sha1,
    new_hasher,
    parse_digest,
    piece_digest,
)
from damselfly.core.errors import UsageError

DATA = random.Random(7).randbytes(1_000_003)
SHA256_HEX = hashlib.sha256(DATA).hexdigest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"sha256:{SHA256_HEX}", Digest("sha256", SHA256_HEX)),
        (f"SHA256:{SHA256_HEX.upper()}", Digest("sha256", SHA256_HEX)),
        (f"  sha256:{SHA256_HEX}  ", Digest("sha256", SHA256_HEX)),
        ("crc32:0a1b2c3d", Digest("crc32", "0a1b2c3d")),
        ("md5:" + "0" * 32, Digest("md5", "0" * 32)),
        ("sha1:" + "f" * 40, Digest("sha1", "f" * 40)),
        ("sha512:" + "a" * 128, Digest("sha512", "a" * 128)),
        ("blake3:" + "b" * 64, Digest("blake3", "b" * 64)),
    ],
)
def test_parse_digest(text: str, expected: Digest) -> None:
    assert parse_digest(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("sha256", "expected <algorithm>:<hex>"),
        ("", "expected <algorithm>:<hex>"),
        ("sha3:" + "a" * 64, "unknown algorithm 'sha3'"),
        ("sha256:" + "a" * 63, "sha256 needs 64 hex digits"),
        ("sha256:" + "a" * 65, "sha256 needs 64 hex digits"),
        ("sha256:" + "g" * 64, "sha256 needs 64 hex digits"),
        ("sha256:", "sha256 needs 64 hex digits"),
        ("crc32:0x123456", "crc32 needs 8 hex digits"),
    ],
)
def test_parse_digest_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_digest(text)


def test_digest_str_and_strength() -> None:
    assert str(Digest("sha256", "ab")) == "sha256:ab"
    strong = {a for a in SUPPORTED_ALGORITHMS if Digest(a, "").is_strong}
    assert strong == {"sha256", "sha512", "blake3"}


ONE_SHOT = {
    "crc32": lambda data: f"{zlib.crc32(data):08x}",
    "md5": lambda data: hashlib.md5(data, usedforsecurity=False).hexdigest(),
    "sha1": lambda data: hashlib.sha1(data, usedforsecurity=False).hexdigest(),
    "sha256": lambda data: hashlib.sha256(data).hexdigest(),
    "sha512": lambda data: hashlib.sha512(data).hexdigest(),
    "blake3": lambda data: blake3.blake3(data).hexdigest(),
}


@pytest.mark.parametrize("algorithm", sorted(SUPPORTED_ALGORITHMS))
def test_incremental_hash_equals_one_shot(algorithm: str) -> None:
    hasher = new_hasher(algorithm)
    view = memoryview(DATA)
    for start in range(0, len(DATA), 65_521):  # odd chunk size, mixed buffer types
        chunk = view[start : start + 65_521]
        hasher.update(chunk if start % 2 else bytes(chunk))
    assert hasher.hexdigest() == ONE_SHOT[algorithm](DATA)


def test_hex_lengths_match_parse_rules() -> None:
    for algorithm in SUPPORTED_ALGORITHMS:
        hexdigest = new_hasher(algorithm).hexdigest()
        assert parse_digest(f"{algorithm}:{hexdigest}") == Digest(algorithm, hexdigest)


def test_crc32_of_nothing_is_zero_padded() -> None:
    assert new_hasher("crc32").hexdigest() == "00000000"


def test_unknown_hasher() -> None:
    with pytest.raises(UsageError, match="unknown digest algorithm 'sha3'"):
        new_hasher("sha3")


def test_piece_digest_is_blake3() -> None:
    assert piece_digest(DATA) == "blake3:" + blake3.blake3(DATA).hexdigest()
    assert piece_digest(bytearray(b"x")) == piece_digest(memoryview(b"x"))


def test_git_blob_sha1_matches_git() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert git_blob_sha1(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
