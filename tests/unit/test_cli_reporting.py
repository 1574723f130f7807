"""How commands log: dfget's short lines, services' lines with a UTC timestamp."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import pytest

from damselfly.cli.reporting import configure_logging


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes the ``damselfly`` logger for the process: undo it."""
    logger = logging.getLogger("damselfly")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.parametrize(
    ("timestamps", "pattern"),
    [
        (False, r"dfget: WARNING: careful\n"),
        (True, r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z dfdaemon: WARNING: careful\n"),
    ],
)
def test_log_line_format(
    capsys: pytest.CaptureFixture[str], timestamps: bool, pattern: str
) -> None:
    configure_logging("dfdaemon" if timestamps else "dfget", "warn", timestamps=timestamps)
    logging.getLogger("damselfly.test").info("not shown at warn")
    logging.getLogger("damselfly.test").warning("careful")
    assert re.fullmatch(pattern, capsys.readouterr().err)
