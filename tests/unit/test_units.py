import pytest

from damselfly.core.errors import UsageError
from damselfly.core.units import format_size, parse_duration, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("4096", 4096),
        ("4MiB", 4 << 20),
        ("4M", 4 << 20),
        ("4mb", 4 << 20),
        ("512k", 512 << 10),
        ("1.5GiB", 3 << 29),
        (" 2 G ", 2 << 30),
    ],
)
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "four", "4XB", "-1M", "4 MiB extra"])
def test_parse_size_rejects(text):
    with pytest.raises(UsageError, match="--piece-length"):
        parse_size(text, what="--piece-length")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90", 90.0),
        ("90s", 90.0),
        ("10m", 600.0),
        ("2h", 7200.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1d", 86400.0),
    ],
)
def test_parse_duration(text, expected):
    assert parse_duration(text) == pytest.approx(expected)


@pytest.mark.parametrize(
    "text", ["", "0", "-5", "2x", "h", "1h 30m", "10m10", "inf", "-inf", "nan", "1e999"]
)
def test_parse_duration_rejects(text):
    with pytest.raises(UsageError, match="--timeout"):
        parse_duration(text, what="--timeout")


@pytest.mark.parametrize(
    ("length", "text"),
    [(0, "0 B"), (1023, "1023 B"), (1024, "1.0 KiB"), (5 << 20, "5.0 MiB"), (3 << 40, "3.0 TiB")],
)
def test_format_size(length, text):
    assert format_size(length) == text
