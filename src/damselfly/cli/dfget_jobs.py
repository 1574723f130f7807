"""Turn dfget's parsed flags into a download request (plain data; the download layer, in
this process or in dfdaemon, turns it into jobs: ``download/request_jobs.py``).

Everything the user can get wrong is checked here, before any daemon is asked: sizes,
durations, headers. Relative paths are made absolute against ``cwd``. The URL scheme's own
flags and environment (a hub token, object-store credentials) are resolved here, once, by that
scheme's backend (``backends/option_specs.py``): a token file is read as the user, since a
daemon may not be able to read it.

``request_fields`` gives the request as the keyword arguments of ``DownloadRequest``, checked
as the model checks them (``request_checks.request_problems``) but without building it: for a
scheme without options of its own (http, https, file), and for hf:// with its options resolved
as plain JSON (``plain=True``), dfget hands those fields to the daemon as JSON and never
imports pydantic (issue 15: a small file in under 150 ms, start-up included).
``request_from_args`` builds the model, for everything else.
"""

from __future__ import annotations

import argparse
import types
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from damselfly.backends.option_specs import options_catalog
from damselfly.core.errors import UsageError, quoted
from damselfly.core.units import parse_duration, parse_size
from damselfly.download.request_checks import job_env, request_problems

if TYPE_CHECKING:
    from damselfly.download.request import DownloadRequest


def request_from_args(
    args: argparse.Namespace, env: Mapping[str, str], cwd: Path
) -> DownloadRequest:
    from damselfly.download.request import DownloadRequest

    return DownloadRequest(**request_fields(args, env, cwd))


def request_fields(
    args: argparse.Namespace, env: Mapping[str, str], cwd: Path, *, plain: bool = False
) -> dict[str, Any]:
    """The request's fields (see the module docstring); ``source`` is the scheme's resolved
    options, or ``None`` for a scheme that has none. ``plain``: the options as the model's
    JSON where the scheme can give them without the model (hf://), else the model."""
    catalog = options_catalog()
    resolve = catalog.resolve_plain if plain else catalog.resolve
    fields = dict(
        url=args.url,
        output=str(cwd / args.output) if args.output else None,
        recursive=args.recursive,
        include=tuple(args.include_files),
        exclude=tuple(args.exclude),
        digest=args.digest,
        piece_length=_size(args.piece_length),
        headers=tuple(parse_header(h) for h in args.header),
        tag=args.tag,
        application=args.application,
        filtered_query_params=tuple(args.filtered_query_param),
        overwrite=args.overwrite,
        force_hard_link=args.force_hard_link,
        content_for_task_id=args.content_for_calculating_task_id,
        max_files=args.max_files,
        concurrent_files=args.max_concurrent_requests,
        insecure=args.insecure,
        timeout=parse_duration(args.timeout, what="--timeout"),
        origin_retries=args.origin_retries,
        concurrent_pieces=args.concurrent_pieces,
        back_to_source=not args.disable_back_to_source,
        source=resolve(args.url, vars(args), env),
        env=job_env(env),
    )
    if args.no_hard_link:  # sent only when set: a daemon older than the field accepts the rest
        fields["hard_link"] = False
    for problem in request_problems(types.SimpleNamespace(**fields)):
        raise UsageError(f"download request: {problem}")
    return fields


def _size(text: str | None) -> int | None:
    """``--piece-length``, checked here: before any daemon or origin is asked."""
    if not text:
        return None
    from damselfly.core.pieces import validate_piece_length

    length = parse_size(text, what="--piece-length")
    validate_piece_length(length)
    return length


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise UsageError(f"header {quoted(text)}: expected 'Name: value'")
    if "\r" in value or "\n" in value:
        raise UsageError(f"header {quoted(name)}: value contains a line break")
    return name, value.strip()
