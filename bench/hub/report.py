"""The hub benchmark's baselines and goal; the figures are ``bench.common.report``'s."""

from __future__ import annotations

from collections.abc import Mapping

BASELINES = ("hf-download", "hf-download-cache")
GOAL = 1.5  # issue 3: dfget hf:// -r at least 1.5x as fast as hf download


def verdict(found: Mapping[str, float]) -> str:
    """The issue's goal in one line: dfget >= 1.5x hf download's throughput."""
    ratio = found.get("dfget/hf-download")
    if ratio is None:
        return f"goal (dfget >= {GOAL}x hf download): not measured (run dfget and hf-download)"
    met = "MET" if ratio >= GOAL else "NOT MET"
    return f"goal (dfget >= {GOAL}x hf download): {met} ({ratio:.2f}x)"
