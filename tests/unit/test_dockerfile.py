"""The Dockerfile, checked statically: no image can be built here (buildah and podman need
the python:3.11-slim base image from a registry this machine cannot reach; see
docs/kubernetes.md). What a build would get wrong that can be seen in the text is checked:
stages, base, user, compilers, health check, what is copied, and that every command the
chart runs is an entry point the image installs."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BUILD_TOOLS = re.compile(r"\b(build-essential|gcc|g\+\+|make|clang|cargo|rustc)\b")


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [value for key, value in self.instructions if key == keyword]


def instructions(text: str) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = [line.strip() for line in joined.splitlines()]
    result = []
    for line in lines:
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def stages(text: str) -> tuple[dict[str, str], list[Stage]]:
    args: dict[str, str] = {}
    found: list[Stage] = []
    for keyword, rest in instructions(text):
        if keyword == "ARG" and not found:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            base, _, name = rest.partition(" AS ")
            found.append(Stage(re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base), name))
        else:
            found[-1].instructions.append((keyword, rest))
    return args, found


DOCKERFILE = (ROOT / "Dockerfile").read_text()
ARGS, STAGES = stages(DOCKERFILE)
FINAL = STAGES[-1]


def test_multi_stage_on_python_311_slim():
    assert len(STAGES) == 2
    assert [s.base for s in STAGES] == ["python:3.11-slim", "python:3.11-slim"]
    assert [s.name for s in STAGES] == ["build", "runtime"]


def test_the_final_stage_runs_as_a_non_root_user_with_no_build_tools():
    assert FINAL.values("USER") == ["10001:10001"]
    user_setup = " ".join(FINAL.values("RUN"))
    assert "useradd --system --uid 10001" in user_setup
    assert not BUILD_TOOLS.search(user_setup)
    assert "apt-get install" not in user_setup
    assert BUILD_TOOLS.search(" ".join(STAGES[0].values("RUN")))  # where they belong
    assert FINAL.values("COPY") == ["--from=build /opt/damselfly /opt/damselfly"]


def test_health_check_and_environment():
    (check,) = FINAL.values("HEALTHCHECK")
    assert "--interval=30s" in check
    assert "DAMSELFLY_HEALTH_URL" in check
    env = " ".join(FINAL.values("ENV"))
    assert "PATH=/opt/damselfly/bin:$PATH" in env
    assert "DAMSELFLY_HEALTH_URL=http://127.0.0.1:4002/healthz" in env
    ports = FINAL.values("EXPOSE")[0].split()
    assert {"4000", "4002", "8002", "8004", "8080", "9443", "65001"} == set(ports)


def test_the_build_copies_only_what_the_dockerignore_lets_in():
    copied = [v.split()[0] for v in STAGES[0].values("COPY")]
    assert copied == ["pyproject.toml", "src"]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[1] == "*"
    assert {"!pyproject.toml", "!README.md", "!src/"} <= set(ignore)


def test_every_command_the_image_and_the_chart_run_is_an_installed_entry_point():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    commands = {FINAL.values("CMD")[0].split('"')[1]}
    templates = ROOT / "deploy" / "helm" / "damselfly" / "templates"
    for template in templates.rglob("*.yaml"):
        commands |= set(re.findall(r"^\s*args:\s*\n\s*- (\w+)", template.read_text(), re.M))
        commands |= set(re.findall(r"args: \[(\w+),", template.read_text()))
    assert commands == {"damselfly", "dfdaemon"}
    assert commands <= set(scripts)
    injected = yaml.safe_load((ROOT / "deploy/helm/damselfly/values.yaml").read_text())
    assert injected["image"]["repository"] == "ghcr.io/damselfly/damselfly"
    assert "dfget" in scripts  # the injector's model-fetching init containers run it
