"""The import-layer contracts (``[tool.importlinter]`` in pyproject.toml) hold, and can fail.

Each failing case copies the package to a temporary tree, adds one forbidden import and runs
the real ``lint-imports`` against the copy with the project's own configuration.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(project / "src")}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(
        ROOT / "src" / "damselfly",
        tmp_path / "src" / "damselfly",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    return tmp_path


def test_the_tree_keeps_every_contract() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "forbidden_import", "contract"),
    [
        ("core/units.py", "import damselfly.download.jobs", "Layers import downwards only"),
        ("storage/gc.py", "import damselfly.backends.registry", "Layers import downwards only"),
        ("daemon/servers/metrics.py", "import damselfly.scheduler.state", "Services never import"),
        ("cli/progress.py", "import damselfly.testing.origin", "Nothing but the tests imports"),
        ("demo/hub.py", "import damselfly.testing.origin", "Nothing but the tests imports"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    project: Path, module: str, forbidden_import: str, contract: str
) -> None:
    path = project / "src" / "damselfly" / module
    path.write_text(path.read_text() + f"\n{forbidden_import}  # noqa\n")

    result = lint_imports(project)

    assert result.returncode != 0, result.stdout
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken
    assert forbidden_import.split()[-1] in broken
