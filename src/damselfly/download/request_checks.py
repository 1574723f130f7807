"""Checks of a ``DownloadRequest`` beyond its types, and pydantic's refusals as one line.

Kept apart from the model so the model module stays a declaration, and free of pydantic, so
dfget checks a plain request (``cli/dfget_jobs.py``) without importing it. ``job_env`` filters
an environment down to what job building reads: ``HOME``/``XDG_CACHE_HOME`` and the names each
scheme's options spec declares.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from damselfly.backends.option_specs import options_catalog

if TYPE_CHECKING:
    from pydantic import ValidationError

GENERIC_ENV_NAMES = frozenset({"HOME", "XDG_CACHE_HOME"})

_POSITIVE = ("piece_length", "concurrent_files", "concurrent_pieces", "timeout")
_NOT_NEGATIVE = ("max_files", "origin_retries")


def env_name_allowed(name: str) -> bool:
    return name in GENERIC_ENV_NAMES or options_catalog().env_name_allowed(name)


def job_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` that job building reads (see the module docstring)."""
    return {k: v for k, v in env.items() if env_name_allowed(k)}


def request_problems(
    request: Any, env_name_allowed: Callable[[str], bool] = env_name_allowed
) -> list[str]:
    """What is wrong with a well-typed request (empty: nothing)."""
    problems = []
    if not request.url:
        problems.append("url is empty")
    if request.output is not None and not PurePosixPath(request.output).is_absolute():
        problems.append(f"output {request.output!r} is not an absolute path")
    for name in _POSITIVE:
        value = getattr(request, name)
        if value is not None and value <= 0:
            problems.append(f"{name} must be greater than zero")
    for name in _NOT_NEGATIVE:
        value = getattr(request, name)
        if value is not None and value < 0:
            problems.append(f"{name} must not be negative")
    problems += [
        f"environment variable {k!r} is not one job building reads"
        for k in request.env
        if not env_name_allowed(k)
    ]
    if request.force_hard_link and not getattr(request, "hard_link", True):
        problems.append("--force-hard-link and --no-hard-link contradict each other")
    problems += [_header_problem(name, value) for name, value in request.headers]
    return [p for p in problems if p]


def _header_problem(name: str, value: str) -> str:
    if not name or any(c.isspace() or c == ":" for c in name):
        return f"header name {name!r} is not valid"
    if "\r" in value or "\n" in value or "\x00" in value:
        return f"header {name!r}: value contains a line break"
    return ""


def validation_message(exc: ValidationError) -> str:
    """pydantic's first complaint, in the words the old hand-written validator used."""
    error = exc.errors(include_url=False)[0]
    kind, where = error["type"], _location(error["loc"])
    if kind == "json_invalid":
        return f"not JSON ({error['msg']})"
    if kind == "model_type" and not where:
        return "expected a JSON object"
    if kind == "missing" and len(error["loc"]) == 1:
        return f"missing field: {where}"
    if kind == "extra_forbidden":
        unknown = sorted(_location(e["loc"]) for e in exc.errors() if e["type"] == kind)
        return f"unknown field(s): {', '.join(unknown)}"
    return f"{where}: {error['msg']}"


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
