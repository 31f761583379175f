"""Errors a user can act on: what went wrong, where, and how to fix it."""

from __future__ import annotations


class SidkitError(Exception):
    """Base of every error sidkit raises on purpose.

    The message always says what was wrong; ``where`` names the file, column or argument, and
    ``fix`` tells the user what to do about it.
    """

    def __init__(self, problem: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.problem = problem
        self.where = where
        self.fix = fix
        message = problem
        if where:
            message = f"{message} (in {where})"
        if fix:
            message = f"{message}. Fix: {fix}"
        super().__init__(message)


class DataError(SidkitError, ValueError):
    """Input data is malformed: wrong dtype, length, dimension, ids, or non-finite values."""


class ConfigError(SidkitError, ValueError):
    """A setting or argument has a value sidkit cannot use."""


class NotFittedError(SidkitError, RuntimeError):
    """A model was used before ``fit`` or ``load``."""
