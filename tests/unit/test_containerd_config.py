"""``damselfly containerd-config``: hosts.toml content (parsed back with tomllib), idempotence,
backups, dry runs and one-line errors, in process and as the real command on a temp dir."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import pytest

from damselfly.cli import containerd_config
from damselfly.cli.containerd_config import hosts_toml, plan

MIRROR = "http://10.1.2.3:65001"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "damselfly.cli.damselfly", "containerd-config", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("registry", "server"),
    [
        ("docker.io", "https://registry-1.docker.io"),
        ("ghcr.io", "https://ghcr.io"),
        ("registry.example.com:5000", "https://registry.example.com:5000"),
    ],
)
def test_hosts_toml_names_the_upstream_and_the_mirror_for_pull_and_resolve(registry, server):
    parsed = tomllib.loads(hosts_toml(registry, MIRROR))
    assert parsed == {"server": server, "host": {MIRROR: {"capabilities": ["pull", "resolve"]}}}


def test_writes_each_registry_then_changes_nothing_on_a_second_run(tmp_path, capsys):
    args = ["--registry", "docker.io", "--registry", "ghcr.io", "--mirror", MIRROR]
    assert containerd_config.main([*args, "--dir", str(tmp_path)]) == 0
    first = capsys.readouterr().out.splitlines()
    assert first == [
        f"docker.io: created {tmp_path}/docker.io/hosts.toml",
        f"ghcr.io: created {tmp_path}/ghcr.io/hosts.toml",
    ]
    written = (tmp_path / "docker.io" / "hosts.toml").read_text()
    assert tomllib.loads(written)["server"] == "https://registry-1.docker.io"
    assert containerd_config.main([*args, "--dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"docker.io: unchanged {tmp_path}/docker.io/hosts.toml",
        f"ghcr.io: unchanged {tmp_path}/ghcr.io/hosts.toml",
    ]
    assert sorted(p.name for p in (tmp_path / "docker.io").iterdir()) == ["hosts.toml"]


def test_a_changed_file_is_replaced_and_kept_as_a_backup(tmp_path):
    target = tmp_path / "docker.io" / "hosts.toml"
    target.parent.mkdir()
    target.write_text('server = "https://registry-1.docker.io"\n# the admin\'s own\n')
    change = plan(tmp_path, "docker.io", MIRROR)
    assert change.action == "updated"
    containerd_config.apply(change)
    assert change.backup is not None
    assert change.backup.read_text().endswith("# the admin's own\n")
    assert tomllib.loads(target.read_text())["host"] == {
        MIRROR: {"capabilities": ["pull", "resolve"]}
    }


def test_the_command_on_a_temp_dir_and_dry_run_writes_nothing(tmp_path):
    dry = run_cli("--registry", "docker.io", "--dir", str(tmp_path), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0] == f"docker.io: would create {tmp_path}/docker.io/hosts.toml"
    shown = "\n".join(dry.stdout.splitlines()[1:])
    assert tomllib.loads(shown)["host"] == {
        "http://127.0.0.1:65001": {"capabilities": ["pull", "resolve"]}
    }
    assert list(tmp_path.iterdir()) == []

    done = run_cli("--registry", "docker.io", "--dir", str(tmp_path), "--mirror", MIRROR)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"docker.io: created {tmp_path}/docker.io/hosts.toml\n"
    assert MIRROR in tomllib.loads((tmp_path / "docker.io/hosts.toml").read_text())["host"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--registry", "https://docker.io"], 2, "--registry 'https://docker.io': expected"),
        (["--registry", "docker.io", "--mirror", "127.0.0.1:65001"], 2, "--mirror"),
        (["--registry", "docker.io", "--dir", "{file}/sub"], 1, "cannot write"),
    ],
)
def test_errors_are_one_line(tmp_path, args, code, message):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_cli(*[a.format(file=blocker) for a in args])
    assert result.returncode == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("damselfly containerd-config: error: ")
    assert message in lines[0]
