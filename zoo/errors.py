"""Errors a user can act on.

Everything the CLI reports as a one-line message (no traceback) is a :class:`ZooError`.
Anything else that escapes is a bug in zoo or in a plugin and is shown with its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ZooError(Exception):
    """A mistake the user can fix; the message says what to do."""


class UnknownIdError(ZooError, KeyError):
    """An id that no loaded plugin registered (``kind`` and ``id`` say which)."""

    def __init__(self, message: str, kind: str | None = None, id: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.id = id

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class PluginError(ZooError):
    """A plugin registered something invalid or failed while registering."""


class IncompatibleComponentsError(ZooError):
    """Components that cannot be composed into one model."""


def first_line(exc: BaseException) -> str:
    """An exception's first non-blank line (its type's name when it has none), at most 200 characters:
    the part of a foreign error that fits in a one-line message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:200]


def is_count(value: object) -> bool:
    """Whether ``value`` is a whole number >= 1 (an ``int``, not a ``bool``): sizes, samples, counts."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def suggest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``name`` among ``candidates``, best first."""
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


class ZooTypeError(ZooError, TypeError):
    """An API argument of the wrong type (a number where a path belongs, say): a ZooError, so the
    command line shows it as one line, and a TypeError, as Python code expects."""


class ZooValueError(ZooError, ValueError):
    """An API argument of the right type but an unusable value (an empty path, a seed out of range)."""
