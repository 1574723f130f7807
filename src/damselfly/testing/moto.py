"""A real ``moto_server`` (an S3 look-alike) in a child process, for tests and benchmarks.

``MotoServer`` starts ``moto_server -H 127.0.0.1 -p 0``, reads the port it bound from its log,
waits until the port answers, and stops the child on exit. It works as a plain or an async
context manager::

    with MotoServer() as moto:
        moto.create_bucket("models")
        moto.put_object("models", "bert/config.json", b"{}")
        options = moto.request_options()      # s3_endpoint, s3_region and dummy keys
        ...

The dummy credentials live in the child's environment and in the options the server hands
out, never in this process's environment. moto accepts any signature until
``enforce_auth()`` turns its IAM checks on; from then only the returned key pair works
(unsigned requests and unknown keys get 403), which is how the bad-credential tests run.

boto3 is imported lazily (it is a test dependency, not a runtime one).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from damselfly.backends.base import RequestOptions

DUMMY_ACCESS_KEY_ID = "damselfly-moto-key"
DUMMY_SECRET_ACCESS_KEY = "damselfly-moto-secret"  # not a secret: moto accepts anything
REGION = "us-east-1"
_LISTENING_RE = re.compile(r"Running on http://127\.0\.0\.1:(\d+)")
_FULL_ACCESS_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
}
_AUTH_SETUP_CALLS = 3  # create_user, create_access_key, put_user_policy


class MotoServer:
    """One ``moto_server`` child on 127.0.0.1 and a free port."""

    def __init__(self, *, start_timeout: float = 20.0) -> None:
        self._start_timeout = start_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        if not self.port:
            raise RuntimeError("MotoServer is not running")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        fd, name = tempfile.mkstemp(prefix="moto-", suffix=".log")
        os.close(fd)
        self._log_path = Path(name)
        with self._log_path.open("ab") as log:  # append mode: our reads never move its writes
            self._process = subprocess.Popen(
                [*_moto_command(), "-H", "127.0.0.1", "-p", "0"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_child_env(),
            )
        try:
            self.port = self._wait_for_port()
            _wait_until_answers(self.port, self._start_timeout)
        except BaseException:
            self.stop()
            raise
        return self.endpoint

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
        self.port = 0

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    # --- fixtures through boto3 ---------------------------------------------------------

    def client(
        self,
        service: str = "s3",
        access_key_id: str = DUMMY_ACCESS_KEY_ID,
        secret_access_key: str = DUMMY_SECRET_ACCESS_KEY,
    ) -> Any:
        import boto3

        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
        )

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def put_object(self, bucket: str, key: str, data: bytes, **extra: Any) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data, **extra)

    def put_objects(self, bucket: str, objects: Mapping[str, bytes]) -> None:
        s3 = self.client()
        for key, data in objects.items():
            s3.put_object(Bucket=bucket, Key=key, Body=data)

    def request_options(self, **params: str | None) -> RequestOptions:
        """Options that point the object-store backend at this server (``params`` win)."""
        base = RequestOptions(timeout=10.0).with_params(
            s3_endpoint=self.endpoint,
            s3_region=REGION,
            s3_access_key_id=DUMMY_ACCESS_KEY_ID,
            s3_secret_access_key=DUMMY_SECRET_ACCESS_KEY,
        )
        return base.with_params(**params)

    @contextmanager
    def enforce_auth(self) -> Iterator[tuple[str, str]]:
        """Turn IAM checks on; yields the only key pair (id, secret) that now works."""
        self._reset_auth(str(_AUTH_SETUP_CALLS))
        try:
            iam = self.client("iam")
            iam.create_user(UserName="damselfly")
            key = iam.create_access_key(UserName="damselfly")["AccessKey"]
            policy = json.dumps(_FULL_ACCESS_POLICY)
            iam.put_user_policy(UserName="damselfly", PolicyName="all", PolicyDocument=policy)
            yield key["AccessKeyId"], key["SecretAccessKey"]
        finally:
            self._reset_auth("inf")

    def _reset_auth(self, count: str) -> None:
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=5) as response:
            response.read()

    def _wait_for_port(self) -> int:
        deadline = time.monotonic() + self._start_timeout
        while time.monotonic() < deadline:
            log = self._log_text()
            match = _LISTENING_RE.search(log)
            if match:
                return int(match.group(1))
            if self._process is None or self._process.poll() is not None:
                raise RuntimeError(f"moto_server exited early: {log[-2000:]}")
            time.sleep(0.02)
        raise RuntimeError(f"moto_server did not start within {self._start_timeout:g}s")

    def _log_text(self) -> str:
        assert self._log_path is not None
        return self._log_path.read_bytes().decode(errors="replace")


def _moto_command() -> list[str]:
    script = Path(sys.executable).with_name("moto_server")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "moto.server"]


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(
        AWS_ACCESS_KEY_ID=DUMMY_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=DUMMY_SECRET_ACCESS_KEY,
        AWS_DEFAULT_REGION=REGION,
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_until_answers(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
