"""One error to raise for a task group that failed, with none of its errors dropped.

``asyncio.TaskGroup`` raises an ``ExceptionGroup`` even when a single task failed; users must
never see "unhandled errors in a TaskGroup" as a message. ``group_error`` turns a group into
the one exception to raise:

- an interrupt or cancellation (a leaf that is not an ``Exception``) wins, unchanged;
- a single leaf is raised as it is;
- several leaves become one error whose message counts them all
  (``3 errors: first: <first>; and 2 more like it``; users never see class names, the
  daemon's log and ``.errors`` keep the detail). It keeps the first
  error's class and fields when that is a ``DamselflyError`` (so exit codes, HTTP statuses
  and ``except`` clauses see what they saw before), else it is a ``GroupedErrors``. Either
  way ``.errors`` holds every leaf.
"""

from __future__ import annotations

from damselfly.core.errors import DamselflyError


class GroupedErrors(DamselflyError):
    """Several concurrent failures whose first one is not a ``DamselflyError``."""

    def __init__(self, message: str, errors: tuple[BaseException, ...]) -> None:
        super().__init__(message)
        self.errors = errors


def group_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception to raise in place of ``group`` (see the module docstring)."""
    leaves = leaf_errors(group)
    interrupt = next((e for e in leaves if not isinstance(e, Exception)), None)
    if interrupt is not None:
        return interrupt
    if len(leaves) == 1:
        return leaves[0]
    message = group_summary(leaves)
    first = leaves[0]
    if isinstance(first, DamselflyError):
        return _retold(first, message, leaves)
    return GroupedErrors(message, leaves)


def leaf_errors(group: BaseExceptionGroup[BaseException]) -> tuple[BaseException, ...]:
    """Every non-group exception in ``group``, depth first, in order."""
    leaves: list[BaseException] = []
    for error in group.exceptions:
        if isinstance(error, BaseExceptionGroup):
            leaves.extend(leaf_errors(error))
        else:
            leaves.append(error)
    return tuple(leaves)


def group_summary(leaves: tuple[BaseException, ...]) -> str:
    """``N errors: first: <message>; and N-1 more[ like it]`` (like it: all of its class)."""
    first, rest = leaves[0], leaves[1:]
    alike = " like it" if all(type(e) is type(first) for e in rest) else ""
    return f"{len(leaves)} errors: first: {_told(first)}; and {len(rest)} more{alike}"


def _told(error: BaseException) -> str:
    return str(error) or "a failure without a message"


def _retold(
    first: DamselflyError, message: str, leaves: tuple[BaseException, ...]
) -> DamselflyError:
    """A copy of ``first`` (same class and fields) whose message is ``message``."""
    error: DamselflyError = type(first).__new__(type(first))
    error.__dict__.update(first.__dict__)
    error.args = (message,)
    error.message = message
    error.errors = leaves  # type: ignore[attr-defined]
    return error
