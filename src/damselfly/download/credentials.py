"""Does a download carry credentials? Then its task is *private* (``docs/security.md``).

A request with a secret header (``Authorization``, cookies, API keys: ``SECRET_HEADERS``), a
secret parameter with a value (``hf_token``, ``ms_token``, object-store keys), userinfo in
its URL or a signed query (``X-Amz-Signature`` and friends) can be fetched only by its caller.
Such a task is never handed to a seed, its pieces go only to holders of a grant, and with a
cluster key its task id is keyed (``private_task_id``) so that it cannot be computed from the
public facts (a file's sha256, its URL and ETag) by anyone outside the cluster.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import parse_qsl

from damselfly.backends.base import SECRET_HEADERS, is_secret_name
from damselfly.core.ids import signature_params
from damselfly.core.urls import HttpUrl, SourceUrl
from damselfly.download.jobs import FileJob

PRIVATE_ID_LABEL = b"damselfly private task v1\0"


def needs_credentials(job: FileJob) -> bool:
    options = job.options
    if any(name.lower() in SECRET_HEADERS for name, _ in options.headers):
        return True
    if any(is_secret_name(name) and value for name, value in options.params):
        return True
    return url_carries_credentials(job.url)


def url_carries_credentials(url: SourceUrl) -> bool:
    """Userinfo or a signed query: only this caller can fetch it, never a seed."""
    if not isinstance(url, HttpUrl):
        return False
    names = [name for name, _ in parse_qsl(url.query, keep_blank_values=True)]
    return url.username is not None or bool(signature_params(names))


def private_task_id(public_task_id: str, key: bytes) -> str:
    """The id a private task goes by when the cluster has a key: HMAC-SHA256 of its public id,
    so only nodes holding the key (the cluster's ``cluster.secret``) can name it."""
    return hmac.new(key, PRIVATE_ID_LABEL + public_task_id.encode(), hashlib.sha256).hexdigest()
