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
   removed, the rest sorted), plus tag, application, the origin's version marker (an ETag, a
   resolved commit; so a moved branch or a replaced object is a new task) and piece length.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode

from damselfly.core.digests import Digest
from damselfly.core.urls import HttpUrl, SourceUrl

_ID_PREFIX = "damselfly-task-v1"

# Query parameters that carry a signature or a credential on common object stores and CDNs.
SIGNATURE_QUERY_PARAMS = frozenset(
    name.lower()
    for name in (
        # AWS SigV4 / SigV2, and S3-compatible stores
        "X-Amz-Algorithm",
        "X-Amz-Credential",
        "X-Amz-Date",
        "X-Amz-Expires",
        "X-Amz-SignedHeaders",
        "X-Amz-Signature",
        "X-Amz-Security-Token",
        "AWSAccessKeyId",
        "Signature",
        "Expires",
        # Google Cloud Storage
        "X-Goog-Algorithm",
        "X-Goog-Credential",
        "X-Goog-Date",
        "X-Goog-Expires",
        "X-Goog-SignedHeaders",
        "X-Goog-Signature",
        "GoogleAccessId",
        # Azure SAS
        "sv",
        "ss",
        "srt",
        "sp",
        "se",
        "st",
        "spr",
        "sig",
        "sr",
        "skoid",
        "sktid",
        "skt",
        "ske",
        "sks",
        "skv",
        # Alibaba OSS, Huawei OBS, Tencent COS
        "OSSAccessKeyId",
        "x-oss-signature",
        "x-oss-expires",
        "x-oss-credential",
        "x-oss-date",
        "x-oss-signature-version",
        "x-oss-security-token",
        "AccessKeyId",
        "x-obs-security-token",
        "q-sign-algorithm",
        "q-ak",
        "q-sign-time",
        "q-key-time",
        "q-header-list",
        "q-url-param-list",
        "q-signature",
        "x-cos-security-token",
        # CloudFront and generic tokens
        "Key-Pair-Id",
        "Policy",
        "token",
        "access_token",
    )
)


def canonical_url(url: SourceUrl, filtered_query_params: Iterable[str] = ()) -> str:
    """The URL as it takes part in task identity: no credentials, no signatures."""
    if not isinstance(url, HttpUrl):
        return url.redacted()
    drop = SIGNATURE_QUERY_PARAMS | {p.lower() for p in filtered_query_params}
    pairs = [
        (k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k.lower() not in drop
    ]
    query = urlencode(sorted(pairs))
    return HttpUrl(url.scheme, url.host, url.port, url.path, query).redacted()


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
