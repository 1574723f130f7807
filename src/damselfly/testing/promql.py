"""The metric names a PromQL expression reads, and the ones a dashboard or rule file uses.

Not a PromQL parser: it drops what cannot be a metric name (strings, label matchers, range
and offset durations, ``by``/``without``/``on``/``ignoring``/``group_*`` label lists,
function calls, keywords, numbers) and keeps the identifiers left. Good enough for the
expressions we ship, and the unit tests pin it on the tricky shapes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

KEYWORDS = {
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "inf",
    "nan",
    "by",
    "without",
    "on",
    "ignoring",
}
KEYWORDS |= {"group_left", "group_right"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-z]+")
_CALL = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]*\s*\(")
_IDENTIFIER = re.compile(r"(?<![0-9.])\b[a-zA-Z_:][a-zA-Z0-9_:]*\b")
_TEMPLATE_VARIABLE = re.compile(r"\$\{?[a-zA-Z_]+\}?")


def metric_names(expr: str) -> set[str]:
    text = _TEMPLATE_VARIABLE.sub("1", _STRING.sub("", expr))
    for pattern in (_MATCHERS, _RANGE, _GROUPING, _OFFSET, _CALL):
        text = pattern.sub(" ", text)
    return {n for n in _IDENTIFIER.findall(text) if n.lower() not in KEYWORDS}


def dashboard_exprs(path: Path) -> list[str]:
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def rule_exprs(path: Path) -> tuple[list[str], set[str]]:
    """The expressions of a rule file, and the names its recording rules define."""
    groups: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    rules = [r for g in groups for r in g["rules"]]
    return [str(r["expr"]) for r in rules], {r["record"] for r in rules if "record" in r}
