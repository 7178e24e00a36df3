"""Assertions shared by the tests. None of them ever prints a secret value."""

from __future__ import annotations

import traceback
from typing import Iterable


def describe(v: object) -> str:
    """What a value looks like, without showing it."""
    if isinstance(v, str):
        return f"a str of {len(v.encode('utf-8', 'surrogatepass'))} bytes"
    return f"a {type(v).__name__}"


def assert_value(got: object, want: object, name: str) -> None:
    """Asserts `got` is `want` (equal, same type) without ever printing either."""
    if type(got) is not type(want) or got != want:
        raise AssertionError(
            f"{name}: value mismatch (got {describe(got)}, expected {describe(want)})"
        )


def assert_no_value(text: str, values: Iterable[str], what: str) -> None:
    """Asserts none of `values` (the non-empty ones) occurs in `text`; names only `what`."""
    for i, v in enumerate(values):
        if v and v in text:
            raise AssertionError(f"{what} holds a secret value (value #{i}, {describe(v)})")


def error_text(err: BaseException) -> str:
    """Everything an error shows: str, repr, args and its formatted traceback."""
    return "\n".join(
        [
            str(err),
            repr(err),
            repr(err.args),
            *traceback.format_exception(type(err), err, err.__traceback__),
        ]
    )
