import os

import pytest

from damselfly.core.errors import OutputError, SourceProtocolError
from damselfly.download.tree_download import safe_output_path, validate_listing

UNSAFE = [
    ("../escape", "'..'"),
    ("a/../../escape", "'..'"),
    ("/etc/passwd", "absolute"),
    ("a/./b", "'.'"),
    ("a//b", "empty"),
    ("a\\b", "backslash"),
    ("a\x00b", "NUL"),
    ("", "empty"),
]


@pytest.mark.parametrize(("path", "problem"), UNSAFE)
def test_listing_rejects_unsafe_paths(path, problem):
    with pytest.raises(SourceProtocolError, match=problem) as caught:
        validate_listing("s3://bucket/prefix/", ["ok.txt", path])
    assert "s3://bucket/prefix/" in str(caught.value)


def test_listing_rejects_duplicates():
    with pytest.raises(SourceProtocolError, match="listed twice"):
        validate_listing("hf://o/r", ["a/b.txt", "c.txt", "a/b.txt"])


def test_listing_accepts_nested_paths():
    validate_listing("hf://o/r", ["a/b.txt", "c.txt", "a/d/e.bin", ".gitattributes"])


def test_safe_output_path_joins_inside_root(tmp_path):
    assert safe_output_path(tmp_path, "a/b.txt") == tmp_path / "a" / "b.txt"


def test_safe_output_path_refuses_symlinked_directory_escape(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "sub")
    with pytest.raises(OutputError, match="escapes"):
        safe_output_path(root, "sub/file.bin")


def test_safe_output_path_refuses_symlinked_file(tmp_path):
    (tmp_path / "target").write_text("keep")
    os.symlink(tmp_path / "target", tmp_path / "link")
    with pytest.raises(OutputError, match="symlink"):
        safe_output_path(tmp_path, "link")
    assert (tmp_path / "target").read_text() == "keep"


@pytest.mark.parametrize("path", ["../x", "/abs"])
def test_safe_output_path_refuses_unsafe_relative(tmp_path, path):
    with pytest.raises(OutputError):
        safe_output_path(tmp_path, path)
