"""Where the report's counter sums come from: saved scrapes, or Prometheus' HTTP API.

Saved scrapes are Prometheus text files (``curl http://<node>:4002/metrics > node.prom``);
a directory means every ``*.prom`` in it. From Prometheus, each figure is an instant query
at the window's end: ``sum(increase(<counter>[<window>]))``, and the histogram
``sum by (le) (increase(<bucket>[<window>]))``.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from damselfly.cli.report_figures import COUNTERS, DURATION, Totals
from damselfly.core.errors import DamselflyError, UsageError

QUERY_TIMEOUT = 30.0  # seconds per Prometheus query


class ReportError(DamselflyError):
    """A metrics source could not be read (a file, or Prometheus)."""


def parse_window(text: str, what: str) -> tuple[float, float]:
    """``START..END`` (RFC 3339 times or Unix seconds) -> Unix seconds."""
    start, sep, end = text.partition("..")
    if not sep:
        raise UsageError(f"{what} {text!r}: expected START..END")
    first, last = _instant(start, what), _instant(end, what)
    if last <= first:
        raise UsageError(f"{what} {text!r}: END must be after START")
    return first, last


def _instant(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"{what}: {text!r} is neither RFC 3339 nor Unix seconds") from exc
    if moment.tzinfo is None:
        raise UsageError(f"{what}: {text!r} has no time zone (add Z for UTC)")
    return moment.timestamp()


def totals_from_files(paths: Iterable[Path]) -> Totals:
    counters: dict[str, float] = defaultdict(float)
    buckets: dict[float, float] = defaultdict(float)
    files = [f for p in paths for f in (sorted(p.glob("*.prom")) if p.is_dir() else [p])]
    if not files:
        raise ReportError("no metrics files (a directory needs *.prom files)")
    for path in files:
        for name, labels, value in _samples(path):
            if name in COUNTERS:
                counters[name] += value
            elif name == DURATION + "_bucket":
                buckets[float(labels["le"])] += value
    return Totals(dict(counters), dict(buckets))


def _samples(path: Path) -> Iterable[tuple[str, dict[str, str], float]]:
    try:
        text = path.read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (ValueError, TypeError) as exc:
        raise ReportError(f"{path}: not Prometheus text format ({exc})") from exc
    for family in families:
        for sample in family.samples:
            yield sample.name, dict(sample.labels), sample.value


async def totals_from_prometheus(base_url: str, window: tuple[float, float]) -> Totals:
    start, end = window
    # all of the window, whole seconds: rounded down, the range would miss the window's start
    # (a counter's jump there would fall between the range's first sample and the one before)
    span = f"{max(1, math.ceil(end - start))}s"
    timeout = aiohttp.ClientTimeout(total=QUERY_TIMEOUT)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        counters = {}
        for name in COUNTERS:
            result = await _query(session, base_url, f"sum(increase({name}[{span}]))", end)
            counters[name] = sum(_value(r) for r in result)
        query = f"sum by (le) (increase({DURATION}_bucket[{span}]))"
        result = await _query(session, base_url, query, end)
    buckets = {float(r["metric"].get("le", "nan")): _value(r) for r in result}
    return Totals(counters, {b: v for b, v in buckets.items() if not math.isnan(b)})


async def _query(
    session: aiohttp.ClientSession, base_url: str, query: str, at: float
) -> list[dict[str, Any]]:
    url = base_url.rstrip("/") + "/api/v1/query"
    try:
        async with session.get(url, params={"query": query, "time": f"{at:.3f}"}) as response:
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ReportError(f"Prometheus at {base_url}: {exc or type(exc).__name__}") from exc
    if not isinstance(body, dict) or body.get("status") != "success":
        error = body.get("error") if isinstance(body, dict) else body
        raise ReportError(f"Prometheus at {base_url} refused {query!r}: {error}")
    result: list[dict[str, Any]] = body.get("data", {}).get("result", [])
    return result


def _value(entry: dict[str, Any]) -> float:
    return float(entry["value"][1])
