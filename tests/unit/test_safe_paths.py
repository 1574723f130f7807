import pytest

from damselfly.core.safe_paths import MAX_PATH_LENGTH, unsafe_path_reason

UNSAFE = [
    ("..", "'..'"),
    ("../escape", "'..'"),
    ("a/../../escape", "'..'"),
    ("a/..", "'..'"),
    ("/etc/passwd", "absolute"),
    ("/", "absolute"),
    ("a\\b", "backslash"),
    ("..\\escape", "backslash"),
    ("a\x00b", "NUL"),
    ("a\nb", "control"),
    ("a\x7fb", "control"),
    ("", "empty"),
    ("a//b", "empty"),
    ("a/", "empty"),
    ("a/./b", "'.'"),
    ("x" * (MAX_PATH_LENGTH + 1), "too long"),
]

SAFE = [
    "a.txt",
    ".gitattributes",
    "a/b c/d..e.txt",
    "...",
    "x" * MAX_PATH_LENGTH,
    # Nothing decodes a listed path before it names a file: this is a file called "%2e%2e".
    "%2e%2e",
    "%2e%2e/%2fescape",
    "a/%5cb",
]


@pytest.mark.parametrize(("path", "problem"), UNSAFE)
def test_unsafe_path_is_refused_with_its_reason(path, problem):
    reason = unsafe_path_reason(path)
    assert reason is not None
    assert problem in reason


@pytest.mark.parametrize("path", SAFE)
def test_safe_path_is_accepted(path):
    assert unsafe_path_reason(path) is None
