"""Object stores (s3, gs, abs, oss, obs, cos) and HDFS, through Apache OpenDAL.

One ``opendal.AsyncOperator`` serves one resolved configuration (service, bucket, endpoint,
region, credentials); operators are cached, least recently used first out. Configuration is
resolved per request from one table, ``STORES`` (``objectstore_stores.py``):

- each ``Setting`` is an OpenDAL config key; its request param is ``<scheme>_<key>``
  (``s3_region``, ``abs_account_key``, ``hdfs_delegation``) unless the table names another;
- a param in ``RequestOptions.params`` wins, else the first variable that is set in the
  ``environ`` the backend was given (read at call time). By default that is empty, never the
  process environment: credentials come with the request (dfget and the API resolve the
  caller's variables into its options, ``objectstore_options.py``), so a dfdaemon serving
  every local user never lends a request its own keys;
- with no credential at all the store is read anonymously where OpenDAL can
  (``anonymous``); OpenDAL's own discovery (config files, instance metadata) stays off so the
  cache key is the whole truth and nothing talks to a metadata service.

Settings marked ``secret`` never appear in a message: errors are rebuilt from OpenDAL's error
kind, HTTP status and service error code, every URL query is cut, and each secret value is
replaced by ``***`` as a last guard.

Known limit: OpenDAL does not check ``Content-Range``, so a server that ignores ``Range``
would hand back bytes from offset 0; real object stores honour ranges, and piece digests
catch the rest downstream.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Mapping
from contextlib import aclosing, suppress
from dataclasses import dataclass
from datetime import UTC
from email.utils import format_datetime
from typing import Any, TypeVar

import opendal
import opendal.exceptions

from damselfly.backends.base import Entry, ObjectStat, RequestOptions, is_secret_name
from damselfly.backends.objectstore_errors import (
    MAPPED_ERRORS,
    first_line,
    map_opendal_error,
    redact,
    strip_url,
)
from damselfly.backends.objectstore_stores import STORES, StoreSpec
from damselfly.core.errors import (
    ConfigError,
    SourceProtocolError,
    SourceTimeoutError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.safe_paths import unsafe_path_reason
from damselfly.core.urls import HdfsUrl, ObjectUrl, SourceUrl

T = TypeVar("T")

READ_CHUNK_LENGTH = 1024 * 1024
OPERATOR_CACHE_SIZE = 32
DEFAULT_WEBHDFS_PORT = 9870


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


@dataclass(frozen=True)
class _Target:
    """One resolved request: the operator, the path inside it, and how to talk about it."""

    operator: opendal.AsyncOperator
    path: str
    shown: str  # the URL as it may appear in messages
    endpoint: str  # the endpoint without userinfo or query, for messages
    secrets: tuple[str, ...]


class ObjectStoreBackend:
    """The ``Backend`` for s3/gs/abs/oss/obs/cos and hdfs URLs, through OpenDAL."""

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        *,
        cache_size: int = OPERATOR_CACHE_SIZE,
        read_chunk_length: int = READ_CHUNK_LENGTH,
    ) -> None:
        self._environ: Mapping[str, str] = {} if environ is None else environ
        self._cache_size = cache_size
        self._chunk_length = read_chunk_length
        self._operators: OrderedDict[tuple[str, ...], opendal.AsyncOperator] = OrderedDict()

    @property
    def cached_operator_count(self) -> int:
        return len(self._operators)

    async def aclose(self) -> None:
        self._operators.clear()

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        target = self._target(url, options)
        if _is_dir_url(url):
            raise SourceProtocolError(target.shown, "is a directory prefix; list it instead")
        meta = await _call(target, target.operator.stat(target.path), options.timeout)
        if meta.is_dir:
            raise SourceProtocolError(target.shown, "is a directory; list it instead")
        return ObjectStat(
            content_length=meta.content_length,
            supports_ranges=True,
            etag=meta.etag,
            last_modified=_http_date(meta),
            content_type=meta.content_type,
        )

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        target = self._target(url, options)
        if _is_dir_url(url):
            async with aclosing(self._files(target, target.path, options.timeout)) as files:
                return await anext(files, None) is not None
        return await _call(target, target.operator.exists(target.path), options.timeout)

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        target = self._target(url, options)
        prefix = target.path if target.path.endswith("/") or not target.path else target.path + "/"
        async with aclosing(self._files(target, prefix, options.timeout)) as files:
            entries = [
                Entry(
                    _child_url(url, item.path),
                    _relative_path(target, prefix, item.path),
                    item.metadata.content_length,
                )
                async for item in files
            ]
        return sorted(entries, key=lambda entry: entry.path)

    async def _files(
        self, target: _Target, prefix: str, call_timeout: float
    ) -> AsyncGenerator[opendal.types.Entry]:
        """Every file below ``prefix``, recursively; each page under its own timeout."""
        listing = target.operator.list(prefix, recursive=True)
        iterator = aiter(await _call(target, listing, call_timeout))
        while (item := await _call(target, anext(iterator, None), call_timeout)) is not None:
            if not (item.metadata.is_dir or item.path.endswith("/")):
                yield item

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncGenerator[bytes]:
        target = self._target(url, options)
        if _is_dir_url(url):
            raise SourceProtocolError(target.shown, "is a directory prefix; list it instead")
        if byte_range is not None and byte_range.length <= 0:
            return
        reader = await _call(target, _open(target, byte_range, options), options.timeout)
        try:
            async for chunk in self._chunks(target, reader, byte_range, options.timeout):
                yield chunk
        finally:
            with suppress(*MAPPED_ERRORS):  # a read-only reader has nothing left to lose
                await reader.close()

    async def _chunks(
        self,
        target: _Target,
        reader: opendal.file.AsyncFile,
        byte_range: ByteRange | None,
        call_timeout: float,
    ) -> AsyncGenerator[bytes]:
        remaining = None if byte_range is None else byte_range.length
        while remaining is None or remaining > 0:
            wanted = self._chunk_length if remaining is None else min(self._chunk_length, remaining)
            chunk = await _call(target, reader.read(wanted), call_timeout)
            if not chunk:
                break
            if remaining is not None:
                remaining -= len(chunk)
            yield chunk
        if remaining:
            assert byte_range is not None
            got = byte_range.length - remaining
            reason = f"expected {byte_range.length} bytes, got {got} (object ended early)"
            raise SourceProtocolError(target.shown, reason)

    def redacted_config(self, url: SourceUrl, options: RequestOptions) -> dict[str, str]:
        """The OpenDAL service and config a request would use, secrets shown as ``***``."""
        scheme, spec = _spec_for(url)
        config, secrets = _resolve(scheme, spec, url, options, self._env())
        shown = {k: "***" if v in secrets else v for k, v in config.items()}
        return {"service": spec.service, **shown}

    def _target(self, url: SourceUrl, options: RequestOptions) -> _Target:
        scheme, spec = _spec_for(url)
        config, secrets = _resolve(scheme, spec, url, options, self._env())
        operator = self._operator(url, scheme, spec, config, secrets)
        endpoint = strip_url(config.get("endpoint", f"the default {spec.service} endpoint"))
        return _Target(operator, _path_of(url), url.redacted(), endpoint, secrets)

    def _env(self) -> Mapping[str, str]:
        return self._environ

    def _operator(
        self,
        url: SourceUrl,
        scheme: str,
        spec: StoreSpec,
        config: dict[str, str],
        secrets: tuple[str, ...],
    ) -> opendal.AsyncOperator:
        key = (spec.service, *(f"{k}={v}" for k, v in sorted(config.items())))
        operator = self._operators.get(key)
        if operator is not None:
            self._operators.move_to_end(key)
            return operator
        try:
            operator = opendal.AsyncOperator(spec.service, **config)
        except opendal.exceptions.ConfigInvalid as exc:
            detail = redact(first_line(str(exc)), secrets)
            raise ConfigError(_config_message(url, scheme, spec, detail)) from exc
        self._operators[key] = operator
        if len(self._operators) > self._cache_size:
            self._operators.popitem(last=False)
        return operator


def _open(
    target: _Target, byte_range: ByteRange | None, options: RequestOptions
) -> Awaitable[opendal.file.AsyncFile]:
    """A reader over the object, or over exactly ``byte_range`` of it (one ranged GET); with
    the ETag the download started from as ``If-Match`` (a replaced object answers 412 ->
    ``SourceChangedError``), where the service supports conditional reads."""
    etag = options.expected.strong_etag if options.expected else None
    extra: dict[str, Any] = {}
    if etag and target.operator.capability().read_with_if_match:
        extra["if_match"] = etag
    if byte_range is not None:
        extra.update(offset=byte_range.start, size=byte_range.length)
    return target.operator.open(target.path, "rb", **extra)


def _spec_for(url: SourceUrl) -> tuple[str, StoreSpec]:
    spec = STORES.get(url.scheme)
    if spec is None or not isinstance(url, ObjectUrl | HdfsUrl):
        raise SourceProtocolError(url.redacted(), "not an object store or hdfs URL")
    return url.scheme, spec


def _resolve(
    scheme: str,
    spec: StoreSpec,
    url: SourceUrl,
    options: RequestOptions,
    env: Mapping[str, str],
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The OpenDAL config for ``url`` (params, then environment), and its secret values."""
    config = {"root": "/", **spec.fixed}
    secrets: list[str] = []
    for setting in spec.settings:
        param = spec.param_name(scheme, setting)
        value = _lookup(param, setting.env, options, env)
        if value is None:
            continue
        if setting.boolean:
            value = _boolean(url, param, value, setting.invert)
        config[setting.key] = value
        if setting.secret or is_secret_name(param):
            secrets.append(value)
    if not any(s.credential and s.key in config for s in spec.settings):
        config.update(spec.anonymous)
    for key, value in spec.defaults.items():
        config.setdefault(key, value)
    _place_url(config, spec, url)
    return config, tuple(secrets)


def _lookup(
    param: str, env_names: tuple[str, ...], options: RequestOptions, env: Mapping[str, str]
) -> str | None:
    value = options.param(param)
    if value:
        return value
    return next((env[name] for name in env_names if env.get(name)), None)


def _boolean(url: SourceUrl, param: str, value: str, invert: bool) -> str:
    lowered = value.strip().lower()
    if lowered not in _TRUE | _FALSE:
        raise ConfigError(f"{url.redacted()}: param {param}: expected true or false")
    return "true" if (lowered in _TRUE) != invert else "false"


def _place_url(config: dict[str, str], spec: StoreSpec, url: SourceUrl) -> None:
    if isinstance(url, ObjectUrl) and spec.bucket_key is not None:
        config[spec.bucket_key] = url.bucket
    if "endpoint" in config or spec.default_endpoint is None:
        return
    fields = dict(config)
    if isinstance(url, HdfsUrl):
        host = f"[{url.host}]" if ":" in url.host else url.host
        fields.update(host=host, port=str(url.port or DEFAULT_WEBHDFS_PORT))
    try:
        config["endpoint"] = spec.default_endpoint.format(**fields)
    except KeyError:
        return  # not enough to derive it; OpenDAL names what is missing


def _config_message(url: SourceUrl, scheme: str, spec: StoreSpec, detail: str) -> str:
    names = ", ".join(spec.param_name(scheme, s) for s in spec.settings)
    return f"{url.redacted()}: invalid {scheme} configuration: {detail} (params: {names})"


def _path_of(url: SourceUrl) -> str:
    if isinstance(url, ObjectUrl):
        return url.key
    assert isinstance(url, HdfsUrl)
    return url.path.lstrip("/")


def _is_dir_url(url: SourceUrl) -> bool:
    if isinstance(url, ObjectUrl):
        return url.is_prefix
    return isinstance(url, HdfsUrl) and url.path.endswith("/")


def _child_url(url: SourceUrl, path: str) -> SourceUrl:
    if isinstance(url, ObjectUrl):
        return ObjectUrl(url.scheme, url.bucket, path)
    assert isinstance(url, HdfsUrl)
    return HdfsUrl(url.host, url.port, "/" + path)


def _relative_path(target: _Target, prefix: str, path: str) -> str:
    """``path`` below ``prefix``, refused when it could escape an output directory."""
    if not path.startswith(prefix):
        raise SourceProtocolError(target.shown, f"listing returned {path!r} outside the prefix")
    relative = path[len(prefix) :]
    problem = unsafe_path_reason(relative)
    if problem is not None:
        reason = f"listing returned an unsafe key {path!r}: {problem}"
        raise SourceProtocolError(target.shown, reason)
    return relative


def _http_date(meta: opendal.types.Metadata) -> str | None:
    modified = meta.last_modified
    if modified is None:
        return None
    if modified.tzinfo is None:
        modified = modified.replace(tzinfo=UTC)
    return format_datetime(modified.astimezone(UTC), usegmt=True)


async def _call(target: _Target, awaitable: Awaitable[T], call_timeout: float) -> T:
    """Await one OpenDAL operation under a timeout, mapping its failures at this edge."""
    try:
        async with asyncio.timeout(call_timeout):
            return await awaitable
    except TimeoutError as exc:
        raise SourceTimeoutError(target.shown, f"no answer within {call_timeout:g}s") from exc
    except MAPPED_ERRORS as exc:
        raise map_opendal_error(exc, target.shown, target.endpoint, target.secrets) from exc
