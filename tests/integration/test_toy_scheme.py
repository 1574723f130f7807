"""A new scheme needs only its backend module and the registry: a ``toy://`` backend with its
own typed options (a flag, an environment variable, a secret) downloads through the generic
path (dfget's flags -> ``DownloadRequest`` -> JSON -> jobs -> store -> output) without any
change to ``download/`` or ``cli/``.

Everything scheme-specific below is what a real backend module would hold: the options model,
its resolution, its flags, its URL shape, and the ``Backend`` itself; registering it is the
registry's part (here: ``options_catalog().registered`` and a ``BackendRegistry`` entry).
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import pytest
from pydantic import SecretStr

from damselfly.backends.base import Entry, ObjectStat, RequestOptions
from damselfly.backends.option_specs import (
    FlagDefaults,
    Flags,
    OptionsSpec,
    flag_group,
    options_catalog,
)
from damselfly.backends.options import Params, Secret, SourceOptions, secret_value
from damselfly.backends.registry import BackendRegistry
from damselfly.cli.dfget_args import build_parser
from damselfly.cli.dfget_jobs import request_from_args
from damselfly.core.errors import ProtocolError, SourceAuthError
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import ObjectUrl, SourceUrl
from damselfly.download.events import NullObserver
from damselfly.download.jobs import DownloadContext
from damselfly.download.request import DownloadRequest
from damselfly.download.request_checks import job_env
from damselfly.download.request_jobs import run_request
from damselfly.storage.store import Store

TOKEN = "toy-s3cret"


# -- what the toy backend's own module would hold -------------------------------------------


class ToyOptions(SourceOptions):
    greeting: str = "hello"
    token: Secret | None = None

    def request_params(self, url: SourceUrl) -> Params:
        token = secret_value(self.token)
        return (("toy_greeting", self.greeting),) + ((("toy_token", token),) if token else ())


def resolve_toy(flags: Flags, env: Mapping[str, str], scheme: str) -> ToyOptions:
    token = flags.get("toy_token") or env.get("TOY_TOKEN")
    return ToyOptions(
        greeting=flags.get("toy_greeting") or "hello",
        token=SecretStr(token) if token else None,
    )


def add_toy_flags(parser: argparse.ArgumentParser, e: FlagDefaults) -> None:
    group = flag_group(parser, "toy")
    group.add_argument("--toy-greeting", default=e.text("toy_greeting"))
    group.add_argument("--toy-token", default=e.text("toy_token"))


def parse_toy_url(raw: str) -> SourceUrl:
    bucket, _, key = raw.partition("://")[2].partition("/")
    return ObjectUrl("toy", bucket, key)


TOY_OPTIONS = OptionsSpec(
    name="toy",
    schemes=frozenset({"toy"}),
    load_model=lambda: ToyOptions,
    resolve=resolve_toy,
    add_flags=add_toy_flags,
    env_names=frozenset({"TOY_TOKEN"}),
    url_parser=parse_toy_url,
)


def toy_bytes(url: SourceUrl, greeting: str) -> bytes:
    return (f"{greeting} from {url}\n" * 5000).encode()


class ToyBackend:
    """Serves ``toy_bytes``; refuses a request without the token: the option must arrive."""

    def __init__(self) -> None:
        self.seen: list[RequestOptions] = []

    def _content(self, url: SourceUrl, options: RequestOptions) -> bytes:
        self.seen.append(options)
        if options.param("toy_token") != TOKEN:
            raise SourceAuthError(url.redacted(), 401, "no toy token")
        return toy_bytes(url, options.param("toy_greeting") or "")

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        return ObjectStat(content_length=len(self._content(url, options)), supports_ranges=True)

    async def get(
        self, url: SourceUrl, byte_range: ByteRange | None, options: RequestOptions
    ) -> AsyncIterator[bytes]:
        data = self._content(url, options)
        yield data if byte_range is None else data[byte_range.start : byte_range.end]

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return True

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        return []

    async def aclose(self) -> None:
        return None


# -- the test: registration plus the generic path ----------------------------------------------


@pytest.fixture
def toy_registered() -> Iterator[OptionsSpec]:
    with options_catalog().registered(TOY_OPTIONS) as spec:
        yield spec


def dfget_request(argv: list[str], env: Mapping[str, str]) -> DownloadRequest:
    args = build_parser(env).parse_args(argv)
    return request_from_args(args, env, Path("/work"))


async def test_toy_scheme_downloads_through_the_generic_path(toy_registered, tmp_path):
    env = {"TOY_TOKEN": TOKEN, "DFGET_TOY_GREETING": "ahoy", "PATH": "/bin"}
    request = dfget_request(["toy://box/greeting.txt", "-O", str(tmp_path / "out.txt")], env)
    assert request.source == ToyOptions(greeting="ahoy", token=SecretStr(TOKEN))
    assert TOKEN not in repr(request)
    assert job_env(env) == {"TOY_TOKEN": TOKEN}  # the toy's own variable is carried
    request = DownloadRequest.from_json(request.to_json())  # as a daemon would receive it
    assert isinstance(request.source, ToyOptions)

    toy = ToyBackend()
    store = Store(tmp_path / "store")
    ctx = DownloadContext(
        store=store, registry=BackendRegistry({"toy": lambda: toy}), observer=NullObserver()
    )
    try:
        result = await run_request(request, ctx)
    finally:
        store.close()

    expected = toy_bytes(parse_toy_url("toy://box/greeting.txt"), "ahoy")
    assert (tmp_path / "out.txt").read_bytes() == expected
    assert (result.files, result.bytes, result.source_bytes) == (1, len(expected), len(expected))
    assert toy.seen
    assert all(o.param("toy_token") == TOKEN for o in toy.seen)


def test_toy_flags_show_in_dfget_help_only_while_registered(capsys):
    with options_catalog().registered(TOY_OPTIONS):
        assert "--toy-greeting" in build_parser({}).format_help()
    assert "--toy-greeting" not in build_parser({}).format_help()


def test_toy_source_options_are_checked_on_arrival(toy_registered):
    body = '{"url": "toy://box/k", "output": "/o", "source": {"greeting": 5}}'
    with pytest.raises(ProtocolError, match=r"source\.greeting: Input should be a valid string"):
        DownloadRequest.from_json(body)
