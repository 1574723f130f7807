"""The injector over real HTTPS (a trustme CA), in process and as the ``damselfly injector``
command: AdmissionReviews in, JSONPatches that give valid Pods out, counters that count."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
import trustme

from damselfly.config.injector import InjectionPolicy, InjectorSettings
from damselfly.injector.server import serve
from damselfly.testing.cluster import parse_metrics
from damselfly.testing.kube import (
    admission_review,
    apply_answer,
    env_of,
    patch_of,
    pod,
    validate_everywhere,
)

INJECT = {"damselfly.io/inject": "true"}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_files(ca, tmp_path):
    cert = ca.issue_cert("127.0.0.1", "damselfly-injector.damselfly.svc")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "tls.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "tls.key"))
    return tmp_path / "tls.crt", tmp_path / "tls.key"


@pytest.fixture
def client_ssl(ca) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


@contextlib.asynccontextmanager
async def running_injector(tls_files, policy: InjectionPolicy) -> AsyncIterator[str]:
    cert, key = tls_files
    settings = InjectorSettings(
        listen="127.0.0.1:0", tls_cert=str(cert), tls_key=str(key), policy=policy
    )
    stop, ready = asyncio.Event(), asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve(settings, stop=stop, on_ready=ready.set_result))
    try:
        async with asyncio.timeout(10):
            address = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
        assert ready.done(), task.exception() if task.done() else address
        yield f"https://{ready.result()}"
    finally:
        stop.set()
        await task


async def post(session: aiohttp.ClientSession, url: str, body: bytes) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    async with session.post(url + "/mutate", data=body, headers=headers) as response:
        return response.status, await response.json()


async def test_reviews_over_https_give_valid_pods_and_counted_outcomes(tls_files, client_ssl):
    policy = InjectionPolicy(namespaces=["ml"])
    inside = pod(annotations={**INJECT, "damselfly.io/models": "hf://org/model"})
    cases = [
        (inside, True),
        (pod(namespace="web", annotations=INJECT), False),
        (pod(annotations=None), False),
        (pod(annotations={**INJECT, "damselfly.io/injected": "true"}), False),
    ]
    async with (
        running_injector(tls_files, policy) as url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session,
    ):
        for obj, changed in cases:
            review = admission_review(obj)
            status, answer = await post(session, url, json.dumps(review).encode())
            assert status == 200
            assert answer["response"]["uid"] == review["request"]["uid"]
            assert answer["response"]["allowed"] is True
            assert bool(patch_of(answer)) is changed
            patched = apply_answer(obj, answer)
            validate_everywhere(patched)
            if changed:
                env = env_of(patched["spec"]["containers"][0])
                assert env["HTTPS_PROXY"] == "http://$(DAMSELFLY_NODE_IP):65001"
                assert patched["spec"]["initContainers"][0]["command"][2] == "hf://org/model"
        async with session.get(url + "/metrics") as response:
            metrics = parse_metrics(await response.text())
        async with session.get(url + "/healthz") as response:
            assert response.status == 200
    reviews = "damselfly_injector_reviews_total"
    assert metrics[f'{reviews}{{outcome="injected"}}'] == 1
    assert metrics[f'{reviews}{{outcome="outside_policy"}}'] == 1
    assert metrics[f'{reviews}{{outcome="not_requested"}}'] == 1
    assert metrics[f'{reviews}{{outcome="already_injected"}}'] == 1


@pytest.mark.parametrize(
    "body", [b"", b"{not json", b"\xff\xfe", b"[1, 2]", b'{"kind": "AdmissionReview"}']
)
async def test_malformed_bodies_get_an_allowed_answer_never_a_500(tls_files, client_ssl, body):
    async with (
        running_injector(tls_files, InjectionPolicy()) as url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session,
    ):
        status, answer = await post(session, url, body)
        async with session.get(url + "/metrics") as response:
            metrics = parse_metrics(await response.text())
    assert status == 200
    assert answer["response"]["allowed"] is True
    assert "malformed AdmissionReview" in answer["response"]["status"]["message"]
    assert metrics['damselfly_injector_reviews_total{outcome="malformed"}'] == 1


async def test_failures_are_counted_and_logged_as_events(tls_files, client_ssl, caplog):
    clash = pod(annotations=INJECT, volumes=[{"name": "damselfly-socket", "emptyDir": {}}])
    policy = InjectionPolicy(failure_policy="fail")
    async with (
        running_injector(tls_files, policy) as url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session,
    ):
        status, answer = await post(session, url, json.dumps(admission_review(clash)).encode())
        async with session.get(url + "/metrics") as response:
            metrics = parse_metrics(await response.text())
    assert status == 200
    assert answer["response"]["allowed"] is False
    assert metrics['damselfly_injector_failures_total{action="refused"}'] == 1
    assert "event reason=InjectionFailed pod=ml/trainer" in caplog.text


async def test_plain_http_is_refused(tls_files):
    async with running_injector(tls_files, InjectionPolicy()) as url:
        plain = url.replace("https://", "http://")
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(plain + "/healthz") as response:
                    await response.read()


async def test_the_command_serves_reviews_until_sigterm(tls_files, client_ssl):
    cert, key = tls_files
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "damselfly.cli.injector", "--listen", "127.0.0.1:0",
        "--tls-cert", str(cert), "--tls-key", str(key),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        async with asyncio.timeout(30):
            line = (await process.stdout.readline()).decode()
        assert line.startswith("injector listening: https="), line
        url = "https://" + line.strip().split("https=", 1)[1]
        obj = pod(annotations=INJECT)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl)) as session:
            status, answer = await post(session, url, json.dumps(admission_review(obj)).encode())
        assert status == 200
        validate_everywhere(apply_answer(obj, answer))
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            code = await process.wait()
    assert code == 0


async def test_the_command_without_tls_is_a_one_line_error():
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "damselfly.cli.injector", "--listen", "127.0.0.1:0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(30):
        _, err = await process.communicate()
    assert process.returncode == 2
    assert err.decode().strip().splitlines() == [
        "damselfly injector: error: injector: tls_cert and tls_key are required "
        "(the API server needs HTTPS)"
    ]
