"""``api/offline.py`` and ``download/hub_trees.py``: the offline switches and the cached
listing, read as huggingface_hub reads them."""

from __future__ import annotations

import json

import pytest

from damselfly.api.hf_compat import IncompleteSnapshotError
from damselfly.api.offline import cached_snapshot
from damselfly.config.hub_env import hub_offline
from damselfly.download.hub_trees import missing_files, read_listing

COMMIT = "a" * 40


@pytest.mark.parametrize(
    ("env", "offline"),
    [
        ({}, False),
        ({"HF_HUB_OFFLINE": "1"}, True),
        ({"HF_HUB_OFFLINE": "yes"}, True),
        ({"HF_HUB_OFFLINE": "0"}, False),
        ({"TRANSFORMERS_OFFLINE": "1"}, True),
        ({"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "TRUE"}, True),
        ({"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "1"}, False),  # the first one set wins
    ],
)
def test_offline_switches(env, offline):
    assert hub_offline(env) is offline


def write_tree(repo_dir, files, version=1):
    trees = repo_dir / "trees"
    trees.mkdir(parents=True, exist_ok=True)
    body = {
        "format_version": version,
        "files": {p: {"size": 1, "blob_id": "b" * 40} for p in files},
    }
    (trees / f"{COMMIT}.json").write_text(json.dumps(body))


def test_a_snapshot_missing_a_listed_file_is_incomplete_for_what_is_selected(tmp_path):
    repo = tmp_path / "models--acme--m"
    snapshot = repo / "snapshots" / COMMIT
    (snapshot / "sub").mkdir(parents=True)
    (snapshot / "a.json").write_text("{}")
    write_tree(repo, ["a.json", "sub/b.bin"])
    with pytest.raises(
        IncompleteSnapshotError, match=r"1 file\(s\) missing \(sub/b.bin\)"
    ) as error:
        cached_snapshot(repo, COMMIT, None)
    assert error.value.snapshot_path == str(snapshot)
    assert cached_snapshot(repo, COMMIT, None, (["*.json"], [])) == str(snapshot)
    assert cached_snapshot(repo, COMMIT, None, ((), ["sub/"])) == str(snapshot)
    assert missing_files(repo, COMMIT, snapshot, ((), ()), under="sub") == ["sub/b.bin"]


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        json.dumps({"format_version": 2, "files": {}}),
        json.dumps({"format_version": 1, "files": {"../escape": {}}}),
        json.dumps({"format_version": 1}),
    ],
)
def test_an_unusable_listing_is_no_listing(tmp_path, text):
    (tmp_path / "trees").mkdir()
    (tmp_path / "trees" / f"{COMMIT}.json").write_text(text)
    assert read_listing(tmp_path, COMMIT) is None
    assert missing_files(tmp_path, COMMIT, tmp_path / "nowhere") is None
