"""How every command reports: logging set-up and the one-line error on failure.

A failure is one line on stderr, ``<prog>: error: <message>``, and the error's exit code.
Tracebacks only with ``--log-level debug``. Messages come from our typed errors, which never
carry a secret.
"""

from __future__ import annotations

import sys

from damselfly.core.errors import EXIT_FAILURE, DamselflyError

# ``logging``'s levels by our flag's words (its own constants: ``logging`` is imported only
# by ``configure_logging``, which dfget calls only when something may log, issue 15)
_LEVELS = {"error": 40, "warn": 30, "info": 20, "debug": 10}


def configure_logging(prog: str, level: str, *, timestamps: bool = False) -> None:
    """``prog: LEVEL: message`` on stderr; ``timestamps`` (long-running services) puts the UTC
    time with milliseconds in front, so events of several hosts can be lined up."""
    import logging
    import time

    handler = logging.StreamHandler(sys.stderr)
    if timestamps:
        formatter = logging.Formatter(
            f"%(asctime)s.%(msecs)03dZ {prog}: %(levelname)s: %(message)s", "%Y-%m-%dT%H:%M:%S"
        )
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter(f"{prog}: %(levelname)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger("damselfly")
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[level])
    root.propagate = False


def report_failure(prog: str, error: BaseException, *, debug: bool) -> int:
    if debug:
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    if isinstance(error, DamselflyError):
        print(f"{prog}: error: {error}", file=sys.stderr)
        return error.exit_code
    hint = "" if debug else " (run with --log-level debug for details)"
    print(f"{prog}: internal error: {type(error).__name__}: {error}{hint}", file=sys.stderr)
    return EXIT_FAILURE
