"""Manager and dfctl settings: defaults, precedence, the database URL, the example config,
the token file's permissions, and dfctl's value parsing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from damselfly.cli.damselfly import main as damselfly_main
from damselfly.cli.dfctl_commands import cell, parse_until, preheat_kind
from damselfly.config import dfctl
from damselfly.config.manager import ManagerSettings, default_data_dir, load
from damselfly.core.errors import ConfigError, UsageError


def test_defaults_listen_on_loopback_with_an_embedded_sqlite_file() -> None:
    settings = load()
    assert settings.listen == "127.0.0.1:8080"
    url = settings.resolved_database_url({"HOME": "/home/u", "XDG_DATA_HOME": ""})
    assert url.startswith("sqlite:///")
    assert url.endswith("/manager.sqlite3")


@pytest.mark.parametrize(
    ("uid", "env", "expected"),
    [
        (0, {}, "/var/lib/damselfly/manager"),
        (1000, {"HOME": "/home/u"}, "/home/u/.local/share/damselfly/manager"),
        (1000, {"HOME": "/home/u", "XDG_DATA_HOME": "/data"}, "/data/damselfly/manager"),
        (1000, {"HOME": "/home/u", "XDG_DATA_HOME": "relative"},
         "/home/u/.local/share/damselfly/manager"),
    ],
)  # fmt: skip
def test_default_data_dir(uid: int, env: dict[str, str], expected: str) -> None:
    assert default_data_dir(env, uid) == Path(expected)


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = tmp_path / "manager.yaml"
    path.write_text("listen: 127.0.0.1:1\nconfig_interval: 1m\nkeepalive_interval: 5s\n")
    env = {"DAMSELFLY_MANAGER_LISTEN": "127.0.0.1:2",
           "DAMSELFLY_MANAGER_DATABASE_URL": "postgresql+psycopg://u@h/db"}  # fmt: skip
    settings = load(path, env, {"keepalive_interval": 7})
    assert (settings.listen, settings.config_interval, settings.keepalive_interval) == (
        "127.0.0.1:2", 60.0, 7.0,
    )  # fmt: skip
    assert settings.resolved_database_url({}) == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    "values",
    [{"database_url": "mysql://x/y"}, {"listen": "nohost"}, {"alive_intervals": 0},
     {"unknown": 1}],
)  # fmt: skip
def test_invalid_values_are_one_config_error(values: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load(None, {}, values)


def test_example_config_is_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert damselfly_main(["manager", "--print-example-config"]) == 0
    example = yaml.safe_load(capsys.readouterr().out)
    assert ManagerSettings.model_validate(example) == load()


def test_dfctl_config_is_written_0600_and_refused_when_others_can_read(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "dfctl.yaml"
    dfctl.save(path, dfctl.DfctlSettings(manager="http://m:1", token="dfm_x"))
    assert path.stat().st_mode & 0o777 == 0o600
    assert dfctl.load(path, {}).token == "dfm_x"
    assert dfctl.load(path, {"DFCTL_TOKEN": "dfm_y"}).token == "dfm_y"
    path.chmod(0o640)
    with pytest.raises(ConfigError, match="readable by others"):
        dfctl.load(path, {})
    assert dfctl.load(tmp_path / "absent.yaml", {}).manager == "http://127.0.0.1:8080"


NOW = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("2026-12-31", "2026-12-31T00:00:00+00:00"),
        ("2026-12-31T12:00:00+02:00", "2026-12-31T12:00:00+02:00"),
        ("30d", "2026-07-01T00:00:00+00:00"),
        ("12h", "2026-06-01T12:00:00+00:00"),
    ],
)
def test_parse_until(text: str | None, expected: str | None) -> None:
    assert parse_until(text, NOW) == expected


def test_parse_until_refuses_nonsense() -> None:
    with pytest.raises(UsageError, match="--until"):
        parse_until("soon", NOW)


@pytest.mark.parametrize(
    ("url", "kind"),
    [("hf://o/m", "repo"), ("modelscope://o/m", "repo"), ("https://x/a", "url"),
     ("docker.io/library/nginx:1", "image")],
)  # fmt: skip
def test_preheat_kind_is_guessed(url: str, kind: str) -> None:
    assert preheat_kind(url) == kind


@pytest.mark.parametrize(
    ("key", "value", "shown"),
    [("download_bps", 1048576, "1.0 MiB/s"), ("files", [1, 2], "2"), ("until", None, "-"),
     ("active", True, "True")],
)  # fmt: skip
def test_table_cells(key: str, value: object, shown: str) -> None:
    assert cell(key, value) == shown
