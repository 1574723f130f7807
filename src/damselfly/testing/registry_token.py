"""A token server for a real ``docker-registry`` with ``auth: token``, as docker.io has.

``RegistryTokenServer`` answers ``GET /token?service=...&scope=repository:<name>:<actions>``
with a JWT (RS256, its certificate in the ``x5c`` header) that the registry verifies against
``cert_path`` (its ``rootcertbundle``):

- without credentials (an *anonymous* pull, what docker.io gives everybody): ``pull`` on the
  repositories in ``public``, nothing on any other (the registry then answers ``401``);
- with ``Authorization: Basic`` of a user in ``users``: every action asked for;
- with wrong credentials: ``401``.

``registry_config`` writes the registry's YAML with this server as its realm. Counters:
``anonymous`` and ``authenticated`` tokens issued, ``refused`` requests.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import secrets
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from damselfly.core.lifecycle import AsyncResource

SERVICE = "damselfly-test-registry"
ISSUER = "damselfly-test-token-server"
TOKEN_LIFETIME = 300  # seconds


class RegistryTokenServer(AsyncResource):
    def __init__(
        self,
        workdir: Path,
        *,
        public: frozenset[str] = frozenset(),
        users: Mapping[str, str] | None = None,
        lifetime: int = TOKEN_LIFETIME,
    ) -> None:
        self.public, self.users, self.lifetime = public, dict(users or {}), lifetime
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._cert = _self_signed(self._key)
        self.cert_path = workdir / "token-signer.pem"
        self.cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        self.counters: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self.realm = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/token", self._token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.realm = f"http://127.0.0.1:{self._runner.addresses[0][1]}/token"

    async def aclose(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def registry_config(self, path: Path, *, port: int, data_dir: Path) -> None:
        """A ``docker-registry`` config on ``127.0.0.1:port`` using this server as its realm."""
        path.write_text(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n"
            f"storage:\n  filesystem:\n    rootdirectory: {data_dir}\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
            f"auth:\n  token:\n    realm: {self.realm}\n    service: {SERVICE}\n"
            f"    issuer: {ISSUER}\n    rootcertbundle: {self.cert_path}\n"
        )

    async def _token(self, request: web.Request) -> web.Response:
        known, user = self._user(request.headers.get("Authorization"))
        if not known:
            self.counters["refused"] += 1
            return web.json_response({"details": "wrong credentials"}, status=401)
        access = [self._grant(scope, user) for scope in request.query.getall("scope", [])]
        self.counters["anonymous" if user is None else "authenticated"] += 1
        token = self._jwt(user or "", request.query.get("service", SERVICE), access)
        body = {"token": token, "access_token": token, "expires_in": self.lifetime}
        return web.json_response(body)

    def _user(self, authorization: str | None) -> tuple[bool, str | None]:
        """(credentials accepted, the user's name or None when anonymous)."""
        if authorization is None:
            return True, None
        scheme, _, value = authorization.partition(" ")
        try:
            name, _, password = base64.b64decode(value).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False, None
        if scheme.lower() != "basic" or self.users.get(name) != password:
            return False, None
        return True, name

    def _grant(self, scope: str, user: str | None) -> dict[str, Any]:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if user is not None:
            allowed = [a for a in actions.split(",") if a]
        else:
            allowed = ["pull"] if name in self.public and "pull" in actions.split(",") else []
        return {"type": kind, "name": name, "actions": allowed}

    def _jwt(self, subject: str, audience: str, access: list[dict[str, Any]]) -> str:
        now = int(time.time())
        der = self._cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        claims = {
            "iss": ISSUER, "sub": subject, "aud": audience, "exp": now + self.lifetime,
            "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access,
        }  # fmt: skip
        signing_input = f"{_b64(json.dumps(header))}.{_b64(json.dumps(claims))}"
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _self_signed(key: rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
