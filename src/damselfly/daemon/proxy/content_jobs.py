"""Which download job a proxied content GET becomes: the same job ``dfget`` would run.

The engine fetcher hands the job to the download layer exactly as the local API does for
dfget, so a file fetched through the proxy and one fetched by ``dfget`` are one task:

- a Hugging Face ``resolve`` URL (``/{owner}/{repo}/resolve/{rev}/{path}``, with a
  ``datasets/`` or ``spaces/`` prefix) becomes ``hf://...`` at that revision on that hub, with
  the client's bearer token as the hub token: ``dfget hf://`` names it the same way (by the
  LFS sha256 and the piece length, or by location for small files), and the backend's
  ``HEAD`` on ``resolve`` with the client's own token is the access check;
- a signed CDN URL the hub redirected an anonymous client to (``MeshRequest.linked``, not
  ``authorized``) is public content: it becomes the ``hf://`` job of the ``resolve`` URL the
  client asked about, with no token, exactly ``dfget hf://`` of that file at that commit (a
  public task a seed can fill; the signed URL is a credential by its looks, and taking it as
  the task's source would make the task private: read from the origin by every node);
- a URL whose sha256 and size the origin vouched for (``MeshRequest.linked``: a signed CDN URL
  the hub redirected a token holder to, or an OCI blob, addressed by its digest) is read from that
  URL, but the task is named by that sha256 and size (for a hub file, the task
  ``dfget hf://`` creates for it) and the bytes are checked against that digest. The signed
  URL is the client's credential: only who the hub gave it to holds it, and the backend's
  ``HEAD`` on it fails once it expired; a registry's token travels as ``Authorization``;
- a ModelScope file download (``/api/v1/{models,datasets}/{owner}/{repo}/repo?Revision=
  &FilePath=``) becomes ``modelscope://...`` at that revision on that hub, with the client's
  bearer token as the hub token: ``dfget modelscope://`` names it the same way (by the listed
  sha256);
- any other URL is read as it is (``Authorization`` sent to that origin only), by location.

A hub job with the client's token is marked ``try_public``: the download layer asks the hub
once more without the token and makes it the public task when the hub serves the same file to
anyone (``download/public_files.py``). The client's ``Authorization`` is put in the request
for the origin only; the download layer
never stores it, logs it, or sends it to the scheduler (``task_meta`` says only that the task
needs credentials).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import SecretStr

from damselfly.backends.hf_options import HfOptions
from damselfly.backends.modelscope_options import ModelScopeOptions
from damselfly.core.digests import Digest
from damselfly.core.errors import UsageError
from damselfly.core.ids import task_id_for_content
from damselfly.core.pieces import choose_piece_length
from damselfly.daemon.proxy.links import LinkedFile
from damselfly.download.jobs import FileJob
from damselfly.download.request import DownloadRequest
from damselfly.download.request_jobs import build_file_job

HF_REPO_PREFIXES = ("datasets", "spaces")
MS_REPO_TYPES = ("models", "datasets")
# Never the daemon's own token file: a client without a token is anonymous.
_NO_TOKEN_FILE = {"HF_TOKEN_PATH": "/dev/null"}
_NO_MS_LOGIN = {"MODELSCOPE_HOME": "/nonexistent"}  # never the daemon's saved login
_UNUSED_OUTPUT = "/dev/null"  # the job fills the store only; nothing is delivered


@dataclass(frozen=True)
class ContentJob:
    job: FileJob
    kind: str  # "hf" | "modelscope" | "linked" | "url": how it was named, for logs
    expected_task_id: str | None = None  # known before the origin is asked


def content_job(url: str, authorization: str | None, linked: LinkedFile | None) -> ContentJob:
    """The job for a content GET of ``url``; raises ``DamselflyError`` for what the download
    layer cannot take (the caller then reads the origin directly)."""
    if urlsplit(url).scheme not in ("http", "https"):
        raise _unsupported("a URL that is not http(s)")
    if linked is not None and not linked.authorized and authorization is None:
        hub = hf_resolve(linked.resolve_url)
        if hub is not None:
            return _hf_job(*hub, None)
    if linked is not None and linked.size and is_sha256(linked.sha256):
        assert linked.sha256 is not None
        return _linked_job(url, linked.sha256, linked.size, authorization)
    hub = hf_resolve(url)
    if hub is not None:
        return _hf_job(*hub, authorization)
    ms = ms_file(url)
    if ms is not None:
        return _ms_job(*ms, authorization)
    headers = (("Authorization", authorization),) if authorization else ()
    request = DownloadRequest(url=url, output=_UNUSED_OUTPUT, headers=headers)
    return ContentJob(build_file_job(request), "url")


def hf_resolve(url: str) -> tuple[str, str, str] | None:
    """``(hf:// URL, revision, hub origin)`` for a Hugging Face ``resolve`` URL, else None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "modelscope" in parts.netloc or parts.query:
        return None
    segments = parts.path.lstrip("/").split("/")
    prefix = segments[0] if segments and segments[0] in HF_REPO_PREFIXES else ""
    head = segments[1:] if prefix else segments
    if len(head) < 5 or head[2] != "resolve" or not all(head[:2]) or not head[3]:
        return None
    path = "/".join(unquote(s) for s in head[4:])
    if not path or any(s in ("", ".", "..") for s in path.split("/")):
        return None
    repo = f"{prefix}/" if prefix else ""
    hf_url = f"hf://{repo}{unquote(head[0])}/{unquote(head[1])}/{path}"
    return hf_url, unquote(head[3]), f"{parts.scheme}://{parts.netloc}"


def ms_file(url: str) -> tuple[str, str, str] | None:
    """``(modelscope:// URL, revision, endpoint)`` for a ModelScope file download
    (``{endpoint}/api/v1/{models|datasets}/{owner}/{repo}/repo?Revision=&FilePath=``)."""
    parts = urlsplit(url)
    prefix, api, rest = parts.path.partition("/api/v1/")
    segments = rest.split("/")
    if not api or len(segments) != 4 or segments[0] not in MS_REPO_TYPES:
        return None
    if segments[3] != "repo" or not segments[1] or not segments[2]:
        return None
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    path, revision = query.get("FilePath", "").strip("/"), query.get("Revision") or "master"
    if set(query) - {"FilePath", "Revision"} or not path:
        return None
    if any(s in ("", ".", "..") for s in path.split("/")):
        return None
    kind = "datasets/" if segments[0] == "datasets" else ""
    ms_url = f"modelscope://{kind}{unquote(segments[1])}/{unquote(segments[2])}/{path}"
    return ms_url, revision, f"{parts.scheme}://{parts.netloc}{prefix}"


def bearer_token(authorization: str | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _hub_token(authorization: str | None) -> SecretStr | None:
    """The hub token an SDK sent (``Authorization: Bearer``); any other credential is refused."""
    token = bearer_token(authorization)
    if authorization is not None and token is None:
        raise _unsupported("a hub credential that is not a bearer token")
    return SecretStr(token) if token else None


def _hf_job(hf_url: str, revision: str, origin: str, authorization: str | None) -> ContentJob:
    request = DownloadRequest(
        url=hf_url,
        output=_UNUSED_OUTPUT,
        source=HfOptions(token=_hub_token(authorization), revision=revision, endpoint=origin),
        env=dict(_NO_TOKEN_FILE),
    )
    return ContentJob(build_file_job(request), "hf")


def _ms_job(ms_url: str, revision: str, endpoint: str, authorization: str | None) -> ContentJob:
    request = DownloadRequest(
        url=ms_url,
        output=_UNUSED_OUTPUT,
        source=ModelScopeOptions(
            token=_hub_token(authorization), revision=revision, endpoint=endpoint
        ),
        env=dict(_NO_MS_LOGIN),
    )
    return ContentJob(build_file_job(request), "modelscope")


def _linked_job(url: str, sha256: str, size: int, authorization: str | None) -> ContentJob:
    digest = Digest("sha256", sha256.lower())
    task_id = task_id_for_content(digest, choose_piece_length(size))
    headers = (("Authorization", authorization),) if authorization else ()
    job = build_file_job(DownloadRequest(url=url, output=_UNUSED_OUTPUT, headers=headers))
    job = dataclasses.replace(job, task_id=task_id, expected_digest=digest, expected_length=size)
    return ContentJob(job, "linked", task_id)


def is_sha256(value: str | None) -> bool:
    return value is not None and len(value) == 64 and all(c in _HEX for c in value.lower())


_HEX = frozenset("0123456789abcdef")


def _unsupported(what: str) -> UsageError:
    return UsageError(f"the mesh cannot take {what}")
