"""The single-node benchmark's baselines and goal; the figures are ``bench.common.report``'s."""

from __future__ import annotations

from collections.abc import Mapping

BASELINES = ("aria2c", "curl")
SUBJECT = "dfget"
GOAL_VS_ARIA2C = 0.9


def verdict(found: Mapping[str, float]) -> str:
    """The issue's goal in one line: dfget >= 0.9x aria2c's throughput."""
    ratio = found.get(f"{SUBJECT}/aria2c")
    if ratio is None:
        return "goal (dfget >= 0.9x aria2c): not measured (run both dfget and aria2c)"
    met = "MET" if ratio >= GOAL_VS_ARIA2C else "NOT MET"
    return f"goal (dfget >= {GOAL_VS_ARIA2C}x aria2c): {met} ({ratio:.2f}x)"
