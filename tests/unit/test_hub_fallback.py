"""The daemon's hf:// backend without the hub: answers from an imported manifest only when
the hub cannot be reached, asks the hub once per request, keeps the hub's error otherwise."""

from __future__ import annotations

import pytest

from damselfly.backends.base import Entry, ObjectStat, RequestOptions
from damselfly.backends.hf_manifest import ManifestFile, RepoManifest
from damselfly.core.errors import SourceNotFoundError, SourceUnreachableError
from damselfly.core.urls import HubUrl, SourceUrl
from damselfly.daemon.imports.hub_fallback import HubFallbackBackend

REPO = HubUrl("hf", "models", "acme", "tiny", "")
MANIFEST = RepoManifest(REPO, "main", "c" * 40, (ManifestFile("a.json", 2, "b" * 40),))


class DownHub:
    """A hub nobody can reach (or one that answers 404), counting the calls."""

    def __init__(self, error: Exception) -> None:
        self.calls = 0
        self.error = error

    async def stat(self, url: SourceUrl, options: RequestOptions) -> ObjectStat:
        self.calls += 1
        raise self.error

    async def list(self, url: SourceUrl, options: RequestOptions) -> list[Entry]:
        self.calls += 1
        raise self.error

    async def exists(self, url: SourceUrl, options: RequestOptions) -> bool:
        return False

    async def aclose(self) -> None:
        return None


class Manifests:
    def __init__(self, manifest: RepoManifest | None) -> None:
        self.manifest = manifest
        self.asked: list[str] = []

    async def find(self, repo: HubUrl, revision: str) -> RepoManifest | None:
        self.asked.append(revision)
        return self.manifest


async def test_an_unreachable_hub_is_asked_once_then_the_manifest_answers() -> None:
    hub = DownHub(SourceUnreachableError("hf://acme/tiny", "cannot connect"))
    manifests = Manifests(MANIFEST)
    backend = HubFallbackBackend(hub, manifests)  # type: ignore[arg-type]
    entries = await backend.list(REPO, RequestOptions())
    assert [(e.path, dict(e.params)["hf_revision"]) for e in entries] == [("a.json", "c" * 40)]
    pinned = RequestOptions(params=(("hf_revision", "c" * 40),))
    stat = await backend.stat(REPO.with_path("a.json"), pinned)
    assert (stat.content_length, stat.etag) == (2, "b" * 40)
    assert hub.calls == 1
    assert manifests.asked == ["main", "c" * 40]


async def test_without_a_manifest_the_hubs_error_stands() -> None:
    error = SourceUnreachableError("hf://acme/tiny", "cannot connect")
    backend = HubFallbackBackend(DownHub(error), Manifests(None))  # type: ignore[arg-type]
    with pytest.raises(SourceUnreachableError) as raised:
        await backend.list(REPO, RequestOptions())
    assert raised.value is error


async def test_a_hub_that_answers_is_not_second_guessed() -> None:
    manifests = Manifests(MANIFEST)
    hub = DownHub(SourceNotFoundError("hf://acme/tiny", 404, "no such repo"))
    backend = HubFallbackBackend(hub, manifests)  # type: ignore[arg-type]
    with pytest.raises(SourceNotFoundError):
        await backend.list(REPO, RequestOptions())
    assert manifests.asked == []
