"""Scheduler settings: defaults, YAML, environment and flag precedence, validation errors, the
generated example config, and the ``damselfly scheduler`` flags that only touch settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ValidationError

from damselfly.cli.scheduler import main
from damselfly.config.base import example_yaml, split_host_port
from damselfly.config.scheduler import SchedulerSettings, load
from damselfly.core.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scheduler.yaml"
    path.write_text(text)
    return path


def test_defaults_need_no_file_and_ignore_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DAMSELFLY_SCHEDULER_LISTEN", "0.0.0.0:9")
    settings = load()
    assert settings.listen == "127.0.0.1:8002"
    assert settings.metrics_listen == "127.0.0.1:8004"
    assert (settings.max_parents, settings.host_ttl, settings.weights.upload) == (4, 20.0, 0.5)


def test_precedence_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = write(
        tmp_path, "listen: 10.0.0.1:1\nmax_parents: 6\nweights:\n  idc: 0.4\n  pieces: 0.1\n"
    )
    env = {
        "DAMSELFLY_SCHEDULER_MAX_PARENTS": "7",
        "damselfly_scheduler_weights__idc": "0.5",  # case-insensitive, nested with __
        "UNRELATED": "x",
    }
    settings = load(path, env, {"listen": "127.0.0.1:0"})
    assert settings.listen == "127.0.0.1:0"
    assert settings.max_parents == 7
    assert (settings.weights.idc, settings.weights.pieces, settings.weights.upload) == (
        0.5,
        0.1,
        0.5,
    )


@pytest.mark.parametrize(
    ("text", "field", "value"),
    [
        ("host_ttl: 2m\n", "host_ttl", 120.0),
        ("host_ttl: 45\n", "host_ttl", 45.0),
        ("shutdown_grace: 500ms\n", "shutdown_grace", 0.5),
        ("max_message_length: 32MiB\n", "max_message_length", 32 * 1024 * 1024),
        ("max_message_length: '2097152'\n", "max_message_length", 2 * 1024 * 1024),
    ],
)
def test_units_in_values(tmp_path: Path, text: str, field: str, value: float) -> None:
    assert getattr(load(write(tmp_path, text)), field) == value


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lisen: 127.0.0.1:1\n", "lisen: Extra inputs are not permitted"),
        ("max_parents: 0\n", "max_parents: Input should be greater than or equal to 1"),
        ("host_ttl: soon\n", "host_ttl: Value error, duration 'soon'"),
        ("listen: localhost\n", "listen: Value error, 'localhost': expected host:port"),
        ("expiry_interval: 30\n", "expiry_interval must be shorter than host_ttl"),
        ("weights:\n  idc: -1\n", "weights.idc: Input should be greater than or equal to 0"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        ("listen: [\n", "not valid YAML"),
    ],
)
def test_invalid_files_name_the_field_and_the_file(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(path) in str(caught.value)
    assert message in str(caught.value)


def test_missing_file_and_bad_environment_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "absent.yaml")
    with pytest.raises(ConfigError, match="max_parents: Input should be a valid integer"):
        load(env={"DAMSELFLY_SCHEDULER_MAX_PARENTS": "many"})


def test_settings_are_frozen() -> None:
    settings = load()
    with pytest.raises(ValidationError, match="frozen"):
        settings.max_parents = 9


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:8002", ("127.0.0.1", 8002)),
        ("[::1]:0", ("::1", 0)),
        ("0.0.0.0:1", ("0.0.0.0", 1)),
    ],
)
def test_split_host_port(address: str, expected: tuple[str, int]) -> None:
    assert split_host_port(address) == expected


def _fields_without_description(model: type[BaseModel], prefix: str = "") -> list[str]:
    missing = []
    for name, info in model.model_fields.items():
        if not info.description:
            missing.append(prefix + name)
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            missing += _fields_without_description(info.annotation, f"{prefix}{name}.")
    return missing


def test_every_field_has_a_description() -> None:
    assert _fields_without_description(SchedulerSettings) == []


def test_example_config_loads_back_to_the_defaults(tmp_path: Path) -> None:
    text = example_yaml(SchedulerSettings)
    assert "# gRPC address daemons connect to" in text
    assert yaml.safe_load(text)["weights"]["idc"] == 0.15
    assert load(write(tmp_path, text)) == load()


def test_cli_prints_the_example_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--print-example-config"]) == 0
    assert capsys.readouterr().out == example_yaml(SchedulerSettings)


def test_cli_bad_config_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, "max_parents: -1\n")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"damselfly scheduler: error: config {path}: max_parents")


def test_one_variable_turns_tls_on_and_the_service_environment_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "tls:\n  enabled: false\n  server_name: sched.example\n")
    on = load(path, {"DAMSELFLY_TLS_DIR": "/etc/damselfly/tls"})
    assert (on.tls.enabled, on.tls.dir, on.tls.server_name) == (
        True, Path("/etc/damselfly/tls"), "sched.example",
    )  # fmt: skip
    assert on.tls.paths()[2] == Path("/etc/damselfly/tls/tls.key")
    off = load(path, {"DAMSELFLY_TLS_DIR": "/x", "DAMSELFLY_SCHEDULER_TLS__ENABLED": "false"})
    assert not off.tls.enabled
    assert not load(path, {}).tls.enabled
    with pytest.raises(ConfigError, match=r"tls\.enabled needs tls\.dir"):
        load(overrides={"tls": {"enabled": True}})


def test_tls_dir_flag(tmp_path: Path) -> None:
    from damselfly.cli.scheduler import _overrides, build_parser

    args = build_parser().parse_args(["--tls-dir", str(tmp_path)])
    assert _overrides(args) == {"tls": {"enabled": True, "dir": tmp_path}}
