import asyncio

import pytest

from damselfly.core.error_groups import GroupedErrors, group_error, leaf_errors
from damselfly.core.errors import (
    DamselflyError,
    SourceNotFoundError,
    SourceUnreachableError,
)


def test_a_single_leaf_is_raised_as_it_is():
    error = SourceNotFoundError("https://h/f", 404, "no such object")
    assert group_error(ExceptionGroup("g", [error])) is error


def test_nested_groups_are_flattened_in_order():
    a, b, c = ValueError("a"), KeyError("b"), OSError("c")
    group = ExceptionGroup("outer", [a, ExceptionGroup("inner", [b, c])])
    assert leaf_errors(group) == (a, b, c)


def test_several_damselfly_errors_keep_the_first_class_and_count_the_rest():
    first = SourceUnreachableError("https://h/f", "connection reset")
    others = [ConnectionResetError("reset"), ConnectionResetError("reset"), TimeoutError()]
    error = group_error(ExceptionGroup("g", [first, *others]))

    assert isinstance(error, SourceUnreachableError)
    assert error.url == first.url
    assert error.exit_code == first.exit_code
    assert str(error) == (f"4 errors: first: {first}; and 3 more")
    assert error.errors == (first, *others)  # type: ignore[attr-defined]
    assert str(first) != str(error)  # the original is left as it was


def test_several_foreign_errors_become_one_damselfly_error():
    errors = [ConnectionResetError("peer reset"), ConnectionResetError(), ValueError("x")]
    error = group_error(ExceptionGroup("g", errors))

    assert isinstance(error, GroupedErrors)
    assert isinstance(error, DamselflyError)
    assert "ExceptionGroup" not in str(error)
    assert str(error) == ("3 errors: first: peer reset; and 2 more")
    assert error.errors == tuple(errors)


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt(), asyncio.CancelledError()])
def test_an_interrupt_wins_over_errors(interrupt):
    group = BaseExceptionGroup("g", [ValueError("x"), interrupt])
    assert group_error(group) is interrupt


async def test_a_task_group_failure_reads_as_one_line():
    async def fail(message: str) -> None:
        raise SourceUnreachableError("https://h/f", message)

    async def both() -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(fail("a"))
                group.create_task(fail("b"))
        except BaseExceptionGroup as errors:
            raise group_error(errors) from None

    with pytest.raises(SourceUnreachableError, match=r"^2 errors: first: .*a.*; and 1 more"):
        await both()


def test_errors_of_one_kind_are_counted_without_class_names():
    errors = [ConnectionResetError("peer reset"), ConnectionResetError()]
    error = group_error(ExceptionGroup("g", errors))
    assert str(error) == "2 errors: first: peer reset; and 1 more like it"
    silent = group_error(ExceptionGroup("g", [TimeoutError(), ValueError("x")]))
    assert str(silent) == "2 errors: first: a failure without a message; and 1 more"
