"""What importing a module loads, asked of a fresh interpreter (start-up time and memory
tests: dfget's hand-off, a plain node daemon)."""

from __future__ import annotations

import json
import subprocess
import sys


def imported_by(module: str, *, then: str = "") -> set[str]:
    """Every module in ``sys.modules`` after ``import module`` (and ``then``, more code)."""
    code = f"import json, sys, {module}\n{then}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"importing {module} failed: {done.stderr}")
    return set(json.loads(done.stdout))
