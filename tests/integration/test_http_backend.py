"""HttpBackend against real OriginServer instances on loopback, one misbehaviour at a time."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from damselfly.backends.base import RangeNotHonouredError, RequestOptions
from damselfly.backends.http import HttpBackend, RetryPolicy
from damselfly.core.digests import Digest
from damselfly.core.errors import (
    BackendError,
    SourceAuthError,
    SourceNotFoundError,
    SourceProtocolError,
    SourceStatusError,
    SourceTimeoutError,
    SourceUnreachableError,
)
from damselfly.core.pieces import ByteRange
from damselfly.core.urls import SourceUrl, parse_url
from damselfly.testing.origin import Behaviour, OriginServer

DATA = bytes(range(256)) * 4096  # 1 MiB, every offset distinguishable mod 256
FAST_RETRY = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.01, jitter=0.0)


@dataclass
class RecordingSleep:
    """A fake ``sleep``: records the delays asked for and returns at once."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
async def origin() -> AsyncIterator[OriginServer]:
    async with OriginServer(files={"/data.bin": DATA}) as server:
        yield server


@pytest.fixture
async def make_backend() -> AsyncIterator[Callable[..., HttpBackend]]:
    created: list[HttpBackend] = []

    def make(**kwargs: object) -> HttpBackend:
        kwargs.setdefault("retry", FAST_RETRY)
        backend = HttpBackend(**kwargs)  # type: ignore[arg-type]
        created.append(backend)
        return backend

    yield make
    for backend in created:
        await backend.aclose()


@pytest.fixture
def backend(make_backend: Callable[..., HttpBackend]) -> HttpBackend:
    return make_backend()


async def collect(
    backend: HttpBackend,
    url: SourceUrl | str,
    byte_range: ByteRange | None = None,
    options: RequestOptions | None = None,
    into: list[bytes] | None = None,
) -> bytes:
    chunks = [] if into is None else into
    parsed = parse_url(url) if isinstance(url, str) else url
    body = backend.get(parsed, byte_range, options or RequestOptions())
    async with contextlib.aclosing(body) as stream:
        async for chunk in stream:
            chunks.append(chunk)
    return b"".join(chunks)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- ranges and body length ---


async def test_ignored_range_raises_before_any_byte(origin, backend) -> None:
    origin.set_behaviour(Behaviour(ignore_range=True), "/data.bin")
    received: list[bytes] = []
    with pytest.raises(RangeNotHonouredError, match=r"bytes 100-199, server ignored Range"):
        await collect(backend, origin.url("/data.bin"), ByteRange(100, 100), into=received)
    assert received == []


async def test_whole_file_range_answered_with_200_is_accepted(origin, backend) -> None:
    origin.set_behaviour(Behaviour(ignore_range=True), "/data.bin")
    got = await collect(backend, origin.url("/data.bin"), ByteRange(0, len(DATA)))
    assert got == DATA


async def test_wrong_content_range_raises_before_any_byte(origin, backend) -> None:
    lying = Behaviour(headers=(("Content-Range", f"bytes 0-9/{len(DATA)}"),))
    origin.set_behaviour(lying, "/data.bin")
    received: list[bytes] = []
    with pytest.raises(RangeNotHonouredError, match="got Content-Range bytes 0-9/"):
        await collect(backend, origin.url("/data.bin"), ByteRange(10, 10), into=received)
    assert received == []


@pytest.mark.parametrize("byte_range", [None, ByteRange(1000, 500_000)], ids=["full", "ranged"])
async def test_short_body_is_a_protocol_error(origin, backend, byte_range) -> None:
    origin.set_behaviour(Behaviour(short_body=4096), "/data.bin")
    expected = len(DATA) if byte_range is None else byte_range.length
    with pytest.raises(SourceProtocolError) as caught:
        await collect(backend, origin.url("/data.bin"), byte_range)
    assert str(caught.value) == (
        f"{origin.url('/data.bin')}: expected {expected} bytes, got 4096 (connection closed early)"
    )
    assert origin.request_count("/data.bin") == 1  # never retried once the body started


async def test_body_stalling_mid_way_times_out(origin, backend) -> None:
    origin.set_behaviour(Behaviour(rate=1000), "/data.bin")  # 50 bytes every 50 ms
    with pytest.raises(SourceTimeoutError, match=r"no data for 0.02s after \d+ bytes"):
        await collect(backend, origin.url("/data.bin"), options=RequestOptions(timeout=0.02))


async def test_path_with_a_space_is_quoted(origin, backend) -> None:
    origin.put("/a b.bin", b"spaced")
    assert await collect(backend, origin.url("/a b.bin")) == b"spaced"
    assert [r.raw_path for r in origin.requests] == ["/a%20b.bin"]


async def test_encoded_url_goes_out_byte_for_byte(origin, backend) -> None:
    origin.put("/x/y", b"signed")
    origin.set_behaviour(Behaviour(redirect_to="/x%2Fy?X-Amz-Signature=a%2Bb%3D%7E"), "/start")
    assert await collect(backend, origin.url("/start?sig=%2B%20%7E")) == b"signed"
    assert [r.raw_path for r in origin.requests] == [
        "/start?sig=%2B%20%7E",
        "/x%2Fy?X-Amz-Signature=a%2Bb%3D%7E",
    ]


async def test_zero_length_range_sends_no_request(origin, backend) -> None:
    assert await collect(backend, origin.url("/data.bin"), ByteRange(5, 0)) == b""
    assert origin.request_count() == 0


# --- retries ---


async def test_503_then_success_honours_retry_after(origin, make_backend) -> None:
    sleep = RecordingSleep()
    backend = make_backend(retry=RetryPolicy(initial_delay=0.001, jitter=0.0), sleep=sleep)
    origin.set_behaviour(Behaviour(fail_first=2, retry_after="7"), "/data.bin")
    assert await collect(backend, origin.url("/data.bin")) == DATA
    assert sleep.delays == [7.0, 7.0]
    assert origin.request_count("/data.bin") == 3


async def test_429_with_http_date_retry_after(origin, make_backend) -> None:
    sleep = RecordingSleep()
    backend = make_backend(retry=RetryPolicy(initial_delay=0.001, jitter=0.0), sleep=sleep)
    when = formatdate(time.time() + 3, usegmt=True)
    origin.set_behaviour(Behaviour(fail_first=1, fail_status=429, retry_after=when), "/data.bin")
    stat = await backend.stat(parse_url(origin.url("/data.bin")), RequestOptions())
    assert stat.content_length == len(DATA)
    assert len(sleep.delays) == 1
    assert 1.5 <= sleep.delays[0] <= 3.0


async def test_retry_after_is_capped_by_policy(origin, make_backend) -> None:
    sleep = RecordingSleep()
    backend = make_backend(retry=RetryPolicy(max_delay=0.5), sleep=sleep)
    origin.set_behaviour(Behaviour(fail_first=1, retry_after="3600"), "/data.bin")
    assert await collect(backend, origin.url("/data.bin")) == DATA
    assert sleep.delays == [0.5]


async def test_retries_really_sleep_and_recover(origin, make_backend) -> None:
    backend = make_backend(retry=RetryPolicy(initial_delay=0.01, max_delay=0.05))
    origin.set_behaviour(Behaviour(fail_first=2, fail_status=502), "/data.bin")
    assert await collect(backend, origin.url("/data.bin"), ByteRange(7, 9)) == DATA[7:16]
    assert origin.request_count("/data.bin") == 3


async def test_exhausted_retries_raise_status_error(origin, make_backend) -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=4, initial_delay=0.1, multiplier=2.0, jitter=0.0)
    backend = make_backend(retry=policy, sleep=sleep)
    origin.set_behaviour(Behaviour(status=503), "/data.bin")
    with pytest.raises(SourceStatusError) as caught:
        await collect(backend, origin.url("/data.bin"))
    assert caught.value.status == 503
    assert str(caught.value) == f"{origin.url('/data.bin')}: HTTP 503 Service Unavailable"
    assert origin.request_count("/data.bin") == 4
    assert sleep.delays == pytest.approx([0.1, 0.2, 0.4])


def test_backoff_jitter_stays_within_bounds() -> None:
    policy = RetryPolicy(initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0.25)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 5.0), (9, 5.0)]:
        delays = {policy.delay(attempt) for _ in range(50)}
        assert all(0.75 * ceiling <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


# --- status mapping ---


@pytest.mark.parametrize(
    ("status", "error", "reason"),
    [
        (401, SourceAuthError, "HTTP 401 Unauthorized"),
        (403, SourceAuthError, "HTTP 403 Forbidden"),
        (404, SourceNotFoundError, "HTTP 404 Not Found"),
        (410, SourceNotFoundError, "HTTP 410 Gone"),
        (418, SourceStatusError, "HTTP 418 I'm a Teapot"),
        (500, SourceStatusError, "HTTP 500 Internal Server Error"),
    ],
)
async def test_status_maps_to_error(origin, backend, status, error, reason) -> None:
    origin.set_behaviour(Behaviour(status=status), "/data.bin")
    url = origin.url("/data.bin")
    with pytest.raises(error) as from_stat:
        await backend.stat(parse_url(url), RequestOptions())
    with pytest.raises(error) as from_get:
        await collect(backend, url)
    for caught in (from_stat, from_get):
        assert type(caught.value) is error
        assert caught.value.status == status
        assert str(caught.value) == f"{url}: {reason}"
    retried = status in (500,)
    assert origin.request_count("/data.bin") == (2 * FAST_RETRY.max_attempts if retried else 2)


async def test_missing_file_is_404(origin, backend) -> None:
    url = parse_url(origin.url("/nope.bin"))
    with pytest.raises(FileNotFoundError):
        await backend.stat(url, RequestOptions())
    assert await backend.exists(url, RequestOptions()) is False
    assert await backend.exists(parse_url(origin.url("/data.bin")), RequestOptions()) is True


async def test_unreachable_host(make_backend) -> None:
    sleep = RecordingSleep()
    backend = make_backend(sleep=sleep)
    url = f"http://127.0.0.1:{closed_port()}/x.bin"
    with pytest.raises(SourceUnreachableError) as caught:
        await backend.stat(parse_url(url), RequestOptions())
    message = str(caught.value)
    assert message.startswith(f"{url}: cannot connect: ")
    assert "\n" not in message
    assert len(sleep.delays) == FAST_RETRY.max_attempts - 1  # connection errors are retried


async def test_no_answer_times_out(origin, make_backend) -> None:
    backend = make_backend(retry=RetryPolicy(max_attempts=1))
    origin.set_behaviour(Behaviour(delay=1.0), "/data.bin")
    with pytest.raises(SourceTimeoutError, match=r": no answer within 0.05s$"):
        await backend.stat(parse_url(origin.url("/data.bin")), RequestOptions(timeout=0.05))


async def test_list_is_not_supported(origin, backend) -> None:
    with pytest.raises(SourceProtocolError, match="listing is not supported for http"):
        await backend.list(parse_url(origin.url("/dir/")), RequestOptions())


# --- stat ---


async def test_stat_reports_origin_headers(origin, backend) -> None:
    stat = await backend.stat(parse_url(origin.url("/data.bin")), RequestOptions())
    assert stat.content_length == len(DATA)
    assert stat.supports_ranges is True
    assert stat.etag is not None
    assert stat.etag.startswith('"')
    assert stat.last_modified is not None
    assert stat.last_modified.endswith("GMT")
    assert stat.content_type == "application/octet-stream"
    assert stat.content_digest is None
    assert origin.request_count(method="HEAD") == 1


@pytest.mark.parametrize(
    "header",
    [
        ("Repr-Digest", "sha-256=:{b64}:"),
        ("Digest", "SHA-256={b64}"),
        ("x-amz-checksum-sha256", "{b64}"),
    ],
)
async def test_stat_reads_sha256_from_headers(origin, backend, header) -> None:
    import base64
    import hashlib

    raw = hashlib.sha256(DATA).digest()
    name, template = header
    value = template.format(b64=base64.b64encode(raw).decode())
    origin.set_behaviour(Behaviour(headers=((name, value),)), "/data.bin")
    stat = await backend.stat(parse_url(origin.url("/data.bin")), RequestOptions())
    assert stat.content_digest == Digest("sha256", raw.hex())


async def test_stat_falls_back_to_ranged_get_when_head_refused(origin, backend) -> None:
    origin.set_behaviour(Behaviour(head_status=405), "/data.bin")
    stat = await backend.stat(parse_url(origin.url("/data.bin")), RequestOptions())
    assert (stat.content_length, stat.supports_ranges) == (len(DATA), True)
    probe = [r for r in origin.requests if r.method == "GET"]
    assert [r.header("Range") for r in probe] == ["bytes=0-0"]
    assert origin.bytes_served_for("/data.bin") == 1


async def test_probe_answered_with_200_means_no_ranges(origin, backend) -> None:
    origin.set_behaviour(Behaviour(head_status=501, ignore_range=True), "/data.bin")
    stat = await backend.stat(parse_url(origin.url("/data.bin")), RequestOptions())
    assert (stat.content_length, stat.supports_ranges) == (len(DATA), False)


async def test_probe_of_empty_file_answered_416(backend) -> None:
    async with OriginServer(files={"/empty": b""}) as server:
        server.set_behaviour(Behaviour(head_status=405))
        stat = await backend.stat(parse_url(server.url("/empty")), RequestOptions())
    assert (stat.content_length, stat.supports_ranges) == (0, True)


# --- headers, credentials and redirects ---


async def test_user_headers_arrive_on_every_request(origin, backend) -> None:
    options = RequestOptions(headers=(("X-Trace", "abc"), ("Authorization", "Bearer t0k")))
    origin.set_behaviour(Behaviour(require_token="t0k"), "/data.bin")
    url = parse_url(origin.url("/data.bin"))
    await backend.stat(url, options)
    assert await collect(backend, url, ByteRange(0, 10), options) == DATA[:10]
    assert [(r.method, r.header("X-Trace")) for r in origin.requests] == [
        ("HEAD", "abc"),
        ("GET", "abc"),
    ]
    assert all(r.header("Accept-Encoding") == "identity" for r in origin.requests)


async def test_redirect_to_another_origin_drops_secrets(origin, backend) -> None:
    async with OriginServer() as first:
        first.set_behaviour(Behaviour(redirect_to=origin.url("/data.bin")), "/model.bin")
        options = RequestOptions(
            headers=(
                ("Authorization", "Bearer s3cret"),
                ("Cookie", "session=s3cret"),
                ("Proxy-Authorization", "Basic s3cret"),
                ("X-Trace", "kept"),
            )
        )
        got = await collect(backend, first.url("/model.bin"), ByteRange(3, 5), options)
    assert got == DATA[3:8]
    [sent] = first.requests
    assert sent.header("Authorization") == "Bearer s3cret"
    [arrived] = origin.requests
    assert arrived.header("X-Trace") == "kept"
    assert arrived.header("Range") == "bytes=3-7"
    for name in ("Authorization", "Cookie", "Proxy-Authorization"):
        assert arrived.header(name) is None


async def test_userinfo_is_basic_auth_for_the_first_origin_only(origin, backend) -> None:
    async with OriginServer() as first:
        first.set_behaviour(Behaviour(redirect_to=origin.url("/data.bin")))
        url = first.url("/x").replace("http://", "http://alice:pa%3Ass@")
        assert await collect(backend, url) == DATA
    assert first.requests[0].header("Authorization") == "Basic YWxpY2U6cGE6c3M="  # alice:pa:ss
    assert origin.requests[0].header("Authorization") is None


async def test_same_origin_redirect_keeps_authorization(origin, backend) -> None:
    origin.put("/new.bin", b"new")
    origin.set_behaviour(Behaviour(redirect_to="/new.bin", redirect_status=301), "/old.bin")
    origin.set_behaviour(Behaviour(require_token="tok"), "/new.bin")
    options = RequestOptions(headers=(("Authorization", "Bearer tok"),))
    assert await collect(backend, origin.url("/old.bin"), options=options) == b"new"


async def test_redirect_loop_stops(origin, backend) -> None:
    origin.set_behaviour(Behaviour(redirect_to="/loop"), "/loop")
    with pytest.raises(SourceProtocolError, match="more than 10 redirects"):
        await backend.stat(parse_url(origin.url("/loop")), RequestOptions())
    assert origin.request_count("/loop") == 11


async def test_redirect_to_other_scheme_is_refused(origin, backend) -> None:
    origin.set_behaviour(Behaviour(redirect_to="ftp://127.0.0.1/x"), "/data.bin")
    with pytest.raises(SourceProtocolError, match="non-http"):
        await backend.stat(parse_url(origin.url("/data.bin")), RequestOptions())


async def test_userinfo_never_appears_in_errors(origin, make_backend) -> None:
    backend = make_backend(retry=RetryPolicy(max_attempts=1))
    secret_urls = [
        origin.url("/missing").replace("http://", "http://bob:hunter2@"),
        f"http://bob:hunter2@127.0.0.1:{closed_port()}/x",
    ]
    for url in secret_urls:
        with pytest.raises(BackendError) as caught:
            await collect(backend, url)
        assert "hunter2" not in str(caught.value)
        assert "bob" not in str(caught.value)
        assert str(caught.value).startswith(parse_url(url).redacted() + ": ")


# --- TLS ---


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    server_context: ssl.SSLContext


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject, issuer, public_key, signing_key, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(signing_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ca_key, leaf_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    ca = _certificate(
        "damselfly test CA", "damselfly test CA", ca_key.public_key(), ca_key, ca=True
    )
    leaf = _certificate("127.0.0.1", "damselfly test CA", leaf_key.public_key(), ca_key, ca=False)
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (directory / "leaf.key").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "leaf.pem", directory / "leaf.key")
    return Pki(directory / "ca.pem", context)


@pytest.fixture
async def https_origin(pki) -> AsyncIterator[OriginServer]:
    async with OriginServer(files={"/data.bin": DATA}, ssl_context=pki.server_context) as server:
        yield server


async def test_untrusted_certificate_is_refused_by_default(https_origin, make_backend) -> None:
    backend = make_backend(sleep=RecordingSleep())
    url = https_origin.url("/data.bin")
    with pytest.raises(SourceUnreachableError) as caught:
        await backend.stat(parse_url(url), RequestOptions())
    assert str(caught.value).startswith(f"{url}: TLS certificate verification failed")
    assert "\n" not in str(caught.value)
    assert https_origin.request_count() == 0
    assert backend._sleep.delays == []  # a bad certificate is not retried


async def test_insecure_skips_verification(https_origin, backend) -> None:
    options = RequestOptions(insecure=True)
    assert (
        await collect(backend, https_origin.url("/data.bin"), ByteRange(1, 3), options)
        == (DATA[1:4])
    )


async def test_ca_from_ssl_cert_file_is_trusted(https_origin, make_backend, pki, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))
    backend = make_backend()
    assert await collect(backend, https_origin.url("/data.bin")) == DATA
