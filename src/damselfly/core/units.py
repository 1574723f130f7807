"""Human units on the command line: sizes (``4MiB``, ``512k``) and durations (``2h``, ``90s``)."""

from __future__ import annotations

import re

from damselfly.core.errors import UsageError, quoted

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?)b?\s*$", re.IGNORECASE)
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SIZE_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_DURATION_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_size(text: str, *, what: str = "size") -> int:
    """``4MiB``, ``4M`` and ``4mb`` are all 4 * 1024**2 (binary units, as Dragonfly)."""
    match = _SIZE_RE.match(text)
    if not match:
        reason = "expected a number with an optional unit (e.g. 4MiB)"
        raise UsageError(f"{what} {quoted(text)}: {reason}")
    number, unit, _binary = match.groups()
    return int(float(number) * 1024 ** _SIZE_POWERS[unit.lower()])


def parse_duration(text: str, *, what: str = "duration") -> float:
    """``90``, ``90s``, ``1m30s``, ``2h``, ``500ms``; a bare number is seconds."""
    compact = text.strip().lower()
    try:
        return _positive(float(compact), text, what)
    except ValueError:
        pass
    parts = _DURATION_RE.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise UsageError(f"{what} {quoted(text)}: expected e.g. 90s, 10m, 2h or 1h30m")
    return _positive(sum(float(n) * _DURATION_SECONDS[u] for n, u in parts), text, what)


def _positive(value: float, text: str, what: str) -> float:
    if value != value or value in (float("inf"), float("-inf")):  # nan, inf: not a duration
        raise UsageError(f"{what} {quoted(text)}: expected a finite number of seconds")
    if value <= 0:
        raise UsageError(f"{what} {quoted(text)}: must be greater than zero")
    return value


def format_size(length: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(length) < 1024 or unit == "TiB":
            return f"{length:.0f} {unit}" if unit == "B" else f"{length:.1f} {unit}"
        length /= 1024
    raise AssertionError("unreachable")
