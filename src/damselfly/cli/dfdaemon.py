"""``dfdaemon``: not built yet (the P2P mesh, issue 4); says so instead of pretending."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from damselfly.core.errors import EXIT_FAILURE


def main(argv: Sequence[str] | None = None) -> int:
    print(
        "dfdaemon: not available yet in this version of damselfly (planned: the P2P mesh)",
        file=sys.stderr,
    )
    return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
