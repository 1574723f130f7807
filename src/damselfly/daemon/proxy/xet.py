"""Xet taken out of the hub's answers, so huggingface_hub downloads through ``resolve``.

With ``hf_xet`` installed, huggingface_hub downloads a file through the Xet protocol (a token
from the hub, then reconstruction info and xorb ranges from the CAS hosts) when the hub
advertises Xet for it. It learns that from two places (huggingface_hub 2.4,
``utils/_xet.py``, ``file_download.py``, ``_snapshot_download.py``):

- the ``HEAD`` on ``resolve``: ``X-Xet-Hash`` plus the token route, as
  ``Link: <...>; rel="xet-auth"`` or ``X-Xet-Refresh-Route``;
- the tree listing (``xetHash`` per file), which ``snapshot_download`` caches and then uses
  to skip the ``HEAD`` altogether.

Neither path reaches the mesh (the CAS hosts are tunnelled). So under a rule that is not
``direct`` the proxy and the mirror endpoints remove what advertises Xet: the ``X-Xet-*``
headers, ``rel="xet-auth"`` links, and ``xetHash`` keys in the hub's JSON answers (``/api/{type}/``
paths). The SDK then takes its plain path: ``resolve``, the redirect to the LFS/bridge CDN,
through the mesh. Carrying the Xet protocol itself through the mesh is not built.

A JSON answer is rewritten whole (its ``Content-Length`` set again, gzip decoded; the request
asks for gzip or nothing); one over ``MAX_JSON`` bytes, or one that does not parse, passes as
it came.
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from damselfly.daemon.proxy.headers import Headers, get, without

XET_HEADERS = frozenset(
    {
        "x-xet-hash",
        "x-xet-refresh-route",
        "x-xet-cas-url",
        "x-xet-access-token",
        "x-xet-token-expiration",
    }
)
XET_LINK_REL = "xet-auth"
XET_KEY = "xetHash"
MAX_JSON = 64 * 2**20

_HUB_API = re.compile(r"/api/(models|datasets|spaces)/")
_LINK = re.compile(r"\s*(<[^>]*>[^,]*)")  # one link-value: <uri> and its parameters
_XET_REL = re.compile(r';\s*rel\s*=\s*"?[^";,]*\bxet-auth\b', re.IGNORECASE)


def is_hub_api(url: str) -> bool:
    """A Hugging Face API path (repo info, tree, paths-info), under any endpoint prefix."""
    path = urlsplit(url).path
    return not path.startswith("/v2/") and _HUB_API.search(path) is not None


def api_request_headers(headers: Headers) -> Headers:
    """A hub API request's headers: an encoding the proxy can decode (gzip) or none."""
    return [*without(headers, ["accept-encoding"]), ("Accept-Encoding", "gzip")]


def without_xet_headers(headers: Headers) -> Headers:
    kept = [(n, v) for n, v in headers if n.lower() not in XET_HEADERS]
    result: Headers = []
    for name, value in kept:
        if name.lower() != "link":
            result.append((name, value))
        elif links := without_xet_links(value):
            result.append((name, links))
    return result


def without_xet_links(value: str) -> str:
    """A ``Link`` header value without its ``rel="xet-auth"`` links."""
    links = [m.group(1).strip() for m in _LINK.finditer(value)]
    return ", ".join(link for link in links if not _XET_REL.search(link))


async def without_xet_json(
    headers: Headers, body: AsyncIterator[bytes]
) -> tuple[Headers, AsyncIterator[bytes]]:
    """A JSON answer's headers and body without ``xetHash`` keys (as it came when it is not
    JSON, too large, or does not parse)."""
    if "json" not in (get(headers, "content-type") or "").lower():
        return headers, body
    held: list[bytes] = []
    size = 0
    async for chunk in body:
        held.append(chunk)
        size += len(chunk)
        if size > MAX_JSON:
            return headers, _chain(held, body)
    raw = b"".join(held)
    rewritten = _rewritten(raw, (get(headers, "content-encoding") or "").lower())
    if rewritten is None:
        return headers, _chain([raw], _empty())
    headers = without(headers, ["content-length", "content-encoding"])
    return [*headers, ("Content-Length", str(len(rewritten)))], _chain([rewritten], _empty())


def _rewritten(raw: bytes, encoding: str) -> bytes | None:
    """The JSON without ``xetHash`` keys, plain; None to send ``raw`` as it came."""
    try:
        if encoding == "gzip":
            inflater = zlib.decompressobj(wbits=31)
            raw = inflater.decompress(raw, MAX_JSON)
            if inflater.unconsumed_tail:
                return None
        elif encoding not in ("", "identity"):
            return None
        value = json.loads(raw)
    except (ValueError, zlib.error):
        return None
    if not _strip(value):
        return None  # nothing advertised Xet: the answer passes as it came
    return json.dumps(value, separators=(",", ":")).encode()


def _strip(value: object) -> bool:
    """Removes ``xetHash`` keys in place; True if there were any."""
    found = False
    if isinstance(value, dict):
        found = value.pop(XET_KEY, None) is not None
        for item in value.values():
            found = _strip(item) or found
    elif isinstance(value, list):
        for item in value:
            found = _strip(item) or found
    return found


async def _chain(first: list[bytes], rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in first:
        yield chunk
    async for chunk in rest:
        yield chunk


async def _empty() -> AsyncIterator[bytes]:
    return
    yield b""
