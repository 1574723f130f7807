"""Issue 10's size rule: no module of the package over 400 lines (small modules, one
concern each; docs/architecture.md)."""

from __future__ import annotations

from pathlib import Path

import damselfly

LIMIT = 400


def test_no_module_is_over_400_lines():
    root = Path(damselfly.__file__).parent
    sizes = {path: len(path.read_text().splitlines()) for path in root.rglob("*.py")}
    assert len(sizes) > 50  # the package itself, not an empty directory
    over = {str(path.relative_to(root)): n for path, n in sizes.items() if n > LIMIT}
    assert not over, f"modules over {LIMIT} lines: {over}"
