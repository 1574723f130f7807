"""Task identity: one stable id for "these bytes, cut into pieces of this length".

Every node must compute the same id for the same content, so the id never depends on who asks
(credentials, ``Authorization`` headers, signed-URL query parameters, userinfo) or on where the
output goes.

Two ways to name a task, strongest first:

1. **By content**, when the origin vouches for a strong digest of the whole file before we
   download it (a hub's sha256 / ``X-Linked-Etag``, an OCI digest, ``x-amz-checksum-sha256``):
   ``sha256("damselfly-task-v1|content|<alg:hex>|<piece_length>")``. The same file under two
   URLs (two mirrors, two revisions) is then one task. A user's ``--digest`` is a claim to
   check, not a name: it does not change the id, so runs with and without it share pieces.
2. **By location**: ``sha256`` over the canonical URL (scheme and host lower-case, default port
   dropped, userinfo and fragment dropped, signature and user-filtered query parameters
   removed, the rest sorted), plus tag, application, the origin's version marker (an ETag,
   else ``last-modified:<date>``, else ``length:<n>``: ``SourceVersion.identity``; a resolved
   commit for hubs) and piece length: a moved branch or a replaced object is a new task, so
   pieces of two versions never meet in one task, in a store or in the mesh.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode

from damselfly.core.digests import Digest
from damselfly.core.urls import HttpUrl, SourceUrl

_ID_PREFIX = "damselfly-task-v1"


def _lower(*names: str) -> frozenset[str]:
    return frozenset(name.lower() for name in names)


# Query parameters that only ever carry a signature or a credential: always dropped.
SIGNATURE_QUERY_PARAMS = _lower(
    # AWS SigV4 and S3-compatible stores
    "X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
    "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Security-Token",
    # Google Cloud Storage
    "X-Goog-Algorithm", "X-Goog-Credential", "X-Goog-Date", "X-Goog-Expires",
    "X-Goog-SignedHeaders", "X-Goog-Signature", "GoogleAccessId",
    # Alibaba OSS, Huawei OBS, Tencent COS
    "OSSAccessKeyId", "x-oss-signature", "x-oss-expires", "x-oss-credential", "x-oss-date",
    "x-oss-signature-version", "x-oss-security-token", "x-obs-security-token",
    "q-sign-algorithm", "q-ak", "q-sign-time", "q-key-time", "q-header-list",
    "q-url-param-list", "q-signature", "x-cos-security-token",
    # key ids of signed URLs, and OAuth 2 bearer tokens in the query (RFC 6750)
    "AWSAccessKeyId", "AccessKeyId", "Key-Pair-Id", "access_token",
)  # fmt: skip

# Generic names that are a signature only beside a key id (SigV2, CloudFront, OBS); on any
# other URL they may select content, so they are kept.
_KEY_ID_PARAMS = _lower("AWSAccessKeyId", "AccessKeyId", "Key-Pair-Id", "OSSAccessKeyId")
_SIGNED_WITH_KEY_ID = _lower("Signature", "Expires", "Policy")

# Azure shared access signatures: dropped only when the URL carries a SAS ``sig``.
_AZURE_SAS_PARAMS = _lower(
    "sv", "ss", "srt", "sp", "se", "st", "spr", "sig", "sr", "si", "sdd", "ses",
    "skoid", "sktid", "skt", "ske", "sks", "skv", "saoid", "suoid", "scid",
)  # fmt: skip


def signature_params(names: Iterable[str]) -> frozenset[str]:
    """Which of a URL's (lower-cased) query parameter names are signatures or credentials."""
    present = {name.lower() for name in names}
    dropped = set(present & SIGNATURE_QUERY_PARAMS)
    if present & _KEY_ID_PARAMS:
        dropped |= present & _SIGNED_WITH_KEY_ID
    if "sig" in present:
        dropped |= present & _AZURE_SAS_PARAMS
    return frozenset(dropped)


def canonical_url(url: SourceUrl, filtered_query_params: Iterable[str] = ()) -> str:
    """The URL as it takes part in task identity: no credentials, no signatures."""
    if not isinstance(url, HttpUrl):
        return url.redacted()
    pairs = parse_qsl(url.query, keep_blank_values=True)
    drop = signature_params(k for k, _ in pairs) | {p.lower() for p in filtered_query_params}
    kept = sorted((k, v) for k, v in pairs if k.lower() not in drop)
    return HttpUrl(url.scheme, url.host, url.port, url.path, urlencode(kept)).redacted()


def task_id_for_content(digest: Digest, piece_length: int) -> str:
    if not digest.is_strong:
        raise ValueError(f"{digest.algorithm} is too weak to name content")
    return _sha256(_ID_PREFIX, "content", str(digest), str(piece_length))


def task_id_for_location(
    url: SourceUrl,
    *,
    piece_length: int,
    version: str = "",
    tag: str = "",
    application: str = "",
    filtered_query_params: Iterable[str] = (),
) -> str:
    canonical = canonical_url(url, filtered_query_params)
    return _sha256(_ID_PREFIX, "location", canonical, version, tag, application, str(piece_length))


def task_id_for_text(text: str, *, piece_length: int, tag: str = "", application: str = "") -> str:
    """Dragonfly's ``--content-for-calculating-task-id``: the caller names the content."""
    return _sha256(_ID_PREFIX, "text", text, tag, application, str(piece_length))


def task_id(
    url: SourceUrl,
    *,
    piece_length: int,
    content_digest: Digest | None = None,
    version: str = "",
    tag: str = "",
    application: str = "",
    filtered_query_params: Iterable[str] = (),
) -> str:
    """The task id: by content when a strong digest is known, else by location."""
    if content_digest is not None and content_digest.is_strong:
        return task_id_for_content(content_digest, piece_length)
    return task_id_for_location(
        url,
        piece_length=piece_length,
        version=version,
        tag=tag,
        application=application,
        filtered_query_params=filtered_query_params,
    )


def _sha256(*fields: str) -> str:
    # Length-prefix every field so ("ab", "c") and ("a", "bc") never collide.
    hasher = hashlib.sha256()
    for field in fields:
        data = field.encode()
        hasher.update(len(data).to_bytes(8, "big"))
        hasher.update(data)
    return hasher.hexdigest()
