"""``DownloadRequest``: one dfget invocation as plain data.

dfget turns its flags into a request (``cli/dfget_jobs.request_from_args``) and either runs it
itself or sends it, as JSON, to dfdaemon's local API; ``download/request_jobs.py`` turns a
request into download jobs on either side. Everything is already parsed and checked where the
user can be told (sizes, durations, headers), and paths are absolute: the daemon has another
working directory.

``env`` carries only the environment variables job building reads (hub endpoints, tokens and
caches, object-store credentials, ``HOME``/``XDG_CACHE_HOME`` for default cache directories);
``job_env`` filters a full environment down to those. Tokens, secret headers and ``env`` never
appear in ``repr``; the URL appears without userinfo and signatures (``redacted_url``).

``from_json`` refuses anything malformed: not an object, an unknown field, a value of the
wrong type (``true`` is not an integer), an environment variable outside the allowed names.
"""

from __future__ import annotations

import dataclasses
import json
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import PurePosixPath
from typing import Any, Union, get_args, get_origin, get_type_hints

from damselfly.core.errors import ProtocolError, UsageError
from damselfly.core.redact import scrub_url

ENV_NAMES = frozenset(
    {
        "HUGGING_FACE_HUB_TOKEN",
        "HUGGINGFACE_HUB_CACHE",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "HADOOP_USER_NAME",
        "HOME",
        "XDG_CACHE_HOME",
    }
)
ENV_PREFIXES = ("HF_", "MODELSCOPE_", "AWS_", "AZURE_STORAGE_", "OSS_", "OBS_", "COS_")
_SECRET_FIELDS = frozenset(
    {"headers", "hf_token", "ms_token", "storage_access_key_secret", "storage_session_token"}
)


def env_name_allowed(name: str) -> bool:
    return name in ENV_NAMES or name.startswith(ENV_PREFIXES)


def job_env(env: Mapping[str, str]) -> dict[str, str]:
    """The part of ``env`` that job building reads (see the module docstring)."""
    return {k: v for k, v in env.items() if env_name_allowed(k)}


@dataclass(frozen=True, repr=False)
class DownloadRequest:
    url: str
    output: str | None = None  # absolute; None only for a hub cache at its default place
    recursive: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    digest: str | None = None  # alg:hex, checked when the job is built
    piece_length: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    tag: str = ""
    application: str = ""
    filtered_query_params: tuple[str, ...] = ()
    overwrite: bool = False
    force_hard_link: bool = False
    content_for_task_id: str | None = None
    max_files: int | None = None
    concurrent_files: int = 5
    hf_token: str | None = None
    hf_revision: str | None = None
    hf_base_url: str | None = None
    hf_cache: bool = False
    ms_token: str | None = None
    ms_revision: str | None = None
    ms_base_url: str | None = None
    ms_cache: bool = False
    storage_endpoint: str | None = None
    storage_region: str | None = None
    storage_access_key_id: str | None = None
    storage_access_key_secret: str | None = None
    storage_session_token: str | None = None
    insecure: bool = False
    timeout: float | None = None  # seconds for the whole download; None: no limit
    origin_retries: int = 4
    concurrent_pieces: int = 8
    back_to_source: bool = True  # False: --disable-back-to-source
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for problem in _problems(self):
            raise UsageError(f"download request: {problem}")

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name not in _SECRET_FIELDS | {"url", "env"}
        )
        return f"DownloadRequest(url={self.redacted_url()!r}, {shown})"

    def redacted_url(self) -> str:
        """The URL without userinfo or signature/token query parameters: safe to log."""
        return scrub_url(self.url)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> DownloadRequest:
        try:
            data = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(f"download request: not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise ProtocolError("download request: expected a JSON object")
        return cls(**_typed_fields(data))


def _problems(request: DownloadRequest) -> list[str]:
    problems = []
    if not request.url:
        problems.append("url is empty")
    if request.output is not None and not PurePosixPath(request.output).is_absolute():
        problems.append(f"output {request.output!r} is not an absolute path")
    for name in ("piece_length", "concurrent_files", "concurrent_pieces", "timeout"):
        value = getattr(request, name)
        if value is not None and value <= 0:
            problems.append(f"{name} must be greater than zero")
    for name in ("max_files", "origin_retries"):
        value = getattr(request, name)
        if value is not None and value < 0:
            problems.append(f"{name} must not be negative")
    problems += [
        f"environment variable {k!r} is not one job building reads"
        for k in request.env
        if not env_name_allowed(k)
    ]
    problems += [_header_problem(name, value) for name, value in request.headers]
    return [p for p in problems if p]


def _header_problem(name: str, value: str) -> str:
    if not name or any(c.isspace() or c == ":" for c in name):
        return f"header name {name!r} is not valid"
    if "\r" in value or "\n" in value or "\x00" in value:
        return f"header {name!r}: value contains a line break"
    return ""


# -- JSON -> typed fields ----------------------------------------------------------------------


@cache
def _field_types() -> dict[str, Any]:
    hints = get_type_hints(DownloadRequest)
    return {f.name: hints[f.name] for f in dataclasses.fields(DownloadRequest)}


def _typed_fields(data: dict[str, Any]) -> dict[str, Any]:
    types_ = _field_types()
    unknown = sorted(set(data) - set(types_))
    if unknown:
        raise ProtocolError(f"download request: unknown field(s): {', '.join(unknown)}")
    if "url" not in data:
        raise ProtocolError("download request: missing field: url")
    return {name: _typed(name, types_[name], value) for name, value in data.items()}


def _typed(name: str, hint: Any, value: Any) -> Any:
    origin, args = get_origin(hint), get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _typed(name, inner, value)
    if origin is tuple:
        items = _expect(name, value, list, "a list")
        inner = args[0] if args[-1] is Ellipsis else None
        if inner is None and len(items) != len(args):
            raise ProtocolError(f"download request: {name}: expected {len(args)} items")
        return tuple(_typed(f"{name}[{i}]", inner or args[i], item) for i, item in enumerate(items))
    if origin is dict:
        mapping = _expect(name, value, dict, "an object")
        return {k: _expect(f"{name}[{k!r}]", v, str, "a string") for k, v in mapping.items()}
    return _scalar(name, hint, value)


def _scalar(name: str, hint: Any, value: Any) -> Any:
    if hint is bool:
        return _expect(name, value, bool, "true or false")
    if hint is str:
        return _expect(name, value, str, "a string")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"download request: {name}: expected a number")
    if hint is int and not isinstance(value, int):
        raise ProtocolError(f"download request: {name}: expected an integer")
    return hint(value)


def _expect(name: str, value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise ProtocolError(f"download request: {name}: expected {what}")
    return value


def uses_hub_cache(request: DownloadRequest) -> bool:
    """``--hf-cache`` with an hf:// URL or ``--ms-cache`` with a modelscope:// URL (a cache
    flag is ignored for other schemes, so ``DFGET_HF_CACHE=1`` can stay set)."""
    scheme = request.url.partition("://")[0].lower()
    return (scheme == "hf" and request.hf_cache) or (scheme == "modelscope" and request.ms_cache)
