"""Turn dfget's parsed flags into download jobs (``FileJob`` / ``TreeJob``)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from damselfly.backends.base import RequestOptions
from damselfly.core.digests import parse_digest
from damselfly.core.errors import UsageError
from damselfly.core.pieces import validate_piece_length
from damselfly.core.urls import HubUrl, SourceUrl, parse_url
from damselfly.download.hub_layouts import (
    HfCacheLayout,
    HfLocalDirLayout,
    HubLayout,
    ModelScopeCacheLayout,
    default_hf_cache_dir,
    default_ms_cache_dir,
)
from damselfly.download.jobs import FileJob
from damselfly.download.tree_download import TreeJob


def build_file_job(
    args: argparse.Namespace, env: Mapping[str, str], piece_length: int | None
) -> FileJob:
    url = parse_url(args.url)
    if piece_length is not None:
        validate_piece_length(piece_length)
    return FileJob(
        url=url,
        output=Path(args.output or ".").absolute(),  # "." only with a hub cache layout
        options=request_options(args, env, url),
        expected_digest=parse_digest(args.digest) if args.digest else None,
        piece_length=piece_length,
        tag=args.tag,
        application=args.application,
        filtered_query_params=tuple(args.filtered_query_param),
        overwrite=args.overwrite or uses_hub_cache(args),  # a cache replaces stale files
        hard_link=True,
        require_hard_link=args.force_hard_link,
        identity_text=args.content_for_calculating_task_id,
    )


def build_tree_job(
    args: argparse.Namespace,
    env: Mapping[str, str],
    piece_length: int | None,
    layout: HubLayout | None = None,
) -> TreeJob:
    if args.digest:
        raise UsageError("--digest applies to one file; it cannot be used with -r")
    if args.content_for_calculating_task_id:
        raise UsageError(
            "--content-for-calculating-task-id names one file; it cannot be used with -r"
        )
    template = build_file_job(args, env, piece_length)
    return TreeJob(
        template=template,
        include=tuple(args.include_files),
        exclude=tuple(args.exclude),
        max_files=args.max_files,
        concurrent_files=max(1, args.max_concurrent_requests),
        layout=layout,
    )


def uses_hub_cache(args: argparse.Namespace) -> bool:
    """``--hf-cache`` with an hf:// URL or ``--ms-cache`` with a modelscope:// URL (a cache
    flag is ignored for other schemes, so ``DFGET_HF_CACHE=1`` can stay set)."""
    scheme = (args.url or "").partition("://")[0].lower()
    return bool((scheme == "hf" and args.hf_cache) or (scheme == "modelscope" and args.ms_cache))


def build_hub_layout(args: argparse.Namespace, env: Mapping[str, str]) -> HubLayout | None:
    """Where a hub download lands: a hub's cache (its dir: -O, else the hub's default), or
    for ``hf:// -r -O dir`` a plain dir with huggingface_hub's metadata; else ``None``."""
    url = parse_url(args.url)
    if not isinstance(url, HubUrl):
        return None
    output = Path(args.output).absolute() if args.output else None
    if uses_hub_cache(args) and url.scheme == "hf":
        cache = output or default_hf_cache_dir(env).absolute()
        return HfCacheLayout(cache, url, args.hf_revision or "main")
    if uses_hub_cache(args):
        cache = output or default_ms_cache_dir(env).absolute()
        return ModelScopeCacheLayout(cache, url, args.ms_revision or "master")
    if url.scheme == "hf" and args.recursive and output is not None:
        return HfLocalDirLayout(output, url)
    return None


def request_options(
    args: argparse.Namespace, env: Mapping[str, str], url: SourceUrl
) -> RequestOptions:
    params = _object_store_params(args, url) + _hub_params(args, env, url)
    return RequestOptions(
        headers=tuple(parse_header(h) for h in args.header),
        insecure=args.insecure,
        params=params,
    )


def parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise UsageError(f"header {text!r}: expected 'Name: value'")
    if "\r" in value or "\n" in value:
        raise UsageError(f"header {name!r}: value contains a line break")
    return name, value.strip()


# dfget's generic --storage-* flags, as each store names them (None: the store has no such).
_STORAGE_FLAG_PARAMS: dict[str, tuple[str | None, ...]] = {
    # scheme: (endpoint, region, key id, key secret, session token)
    "s3": ("endpoint", "region", "access_key_id", "secret_access_key", "session_token"),
    "oss": ("endpoint", None, "access_key_id", "access_key_secret", "security_token"),
    "obs": ("endpoint", None, "access_key_id", "secret_access_key", None),
    "cos": ("endpoint", None, "secret_id", "secret_key", "security_token"),
    "abs": ("endpoint", None, "account_name", "account_key", "sas_token"),
    "gs": ("endpoint", None, None, None, "token"),
}


def _object_store_params(args: argparse.Namespace, url: SourceUrl) -> tuple[tuple[str, str], ...]:
    names = _STORAGE_FLAG_PARAMS.get(url.scheme)
    if names is None:
        return ()
    values = (
        args.storage_endpoint,
        args.storage_region,
        args.storage_access_key_id,
        args.storage_access_key_secret,
        args.storage_session_token,
    )
    return tuple(
        (f"{url.scheme}_{name}", value)
        for name, value in zip(names, values, strict=True)
        if name and value
    )


DEFAULT_HF_ENDPOINT = "https://huggingface.co"


def _hub_params(
    args: argparse.Namespace, env: Mapping[str, str], url: SourceUrl
) -> tuple[tuple[str, str], ...]:
    """Endpoint, token and revision of the hub the URL names (and only that hub's token)."""
    if url.scheme == "hf":
        from damselfly.backends.hf_api import resolve_hf_token  # only for hub URLs: startup

        values = {
            "hf_endpoint": args.hf_base_url or env.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT,
            "hf_token": resolve_hf_token(args.hf_token, env),
            "hf_revision": args.hf_revision or "main",
        }
    elif url.scheme == "modelscope":
        from damselfly.backends.modelscope import resolve_ms_endpoint, resolve_ms_token

        values = {
            "ms_endpoint": resolve_ms_endpoint(args.ms_base_url, env),
            "ms_token": resolve_ms_token(args.ms_token, env),
            "ms_revision": args.ms_revision or "master",
        }
    else:
        return ()
    return tuple(
        (k, v.rstrip("/") if k.endswith("endpoint") else v) for k, v in values.items() if v
    )
