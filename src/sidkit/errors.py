"""Errors a user can act on: what went wrong, where, and how to fix it.

sidkit raises :class:`SidkitError` (or a subclass) for every failure it expects. Failures that come
from the environment (a read-only folder, a full disk, memory that cannot be had) arrive as
``OSError`` / ``MemoryError`` from deep inside numpy, pyarrow, torch or SQLite; :func:`explain`
turns them into the same kind of error, so the command line reports every expected failure the same
way: one line, what and where, ``Fix:`` how, exit status 2.
"""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path


class SidkitError(Exception):
    """Base of every error sidkit raises on purpose.

    The message always says what was wrong; ``where`` names the file, column or argument, and
    ``fix`` tells the user what to do about it. Raise with a ``fix`` of your own; each class has a
    general one (``default_fix``) so that no message goes without.
    """

    default_fix = "correct what the message names, then run again"

    def __init__(self, problem: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.problem = problem
        self.where = where
        fix = fix or self.default_fix
        self.fix = fix
        message = problem
        if where:
            message = f"{message} (in {where})"
        if fix:
            message = f"{message}. Fix: {fix}"
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keep problem, where and fix apart across processes (multiprocessing, Ray), not one string.
        return (_rebuild, (type(self), self.problem, self.where, self.fix))


def _rebuild(cls: type[SidkitError], problem: str, where: str | None, fix: str | None) -> SidkitError:
    error = cls.__new__(cls)
    SidkitError.__init__(error, problem, where=where, fix=fix)
    return error


class DataError(SidkitError, ValueError):
    """Input data is malformed: wrong dtype, length, dimension, ids, or non-finite values."""

    default_fix = "correct the input the message names (or pass another one), then run again"


class ConfigError(SidkitError, ValueError):
    """A setting or argument has a value sidkit cannot use."""

    default_fix = "give that setting a value in the range the message states"


class NotFittedError(SidkitError, RuntimeError):
    """A model was used before ``fit`` or ``load``."""


class StorageError(SidkitError, OSError):
    """A file or folder cannot be read or written: permissions, a read-only or full disk, a path that
    names a file where a folder is needed (or the reverse)."""


class ResourceError(SidkitError, MemoryError):
    """Memory (or another resource of the machine) that the work needs cannot be had."""


class Interrupted(SidkitError):
    """The user stopped the command (Ctrl-C) or the system asked it to stop (SIGTERM)."""


def innermost_sidkit_error(error: BaseException) -> SidkitError | None:
    """The deepest :class:`SidkitError` in the chain of ``error`` (Ray's ``cause``, ``__cause__``,
    ``__context__``), or None."""
    found: SidkitError | None = None
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SidkitError):
            found = current
        following = getattr(current, "cause", None)  # Ray keeps the task's exception here
        if not isinstance(following, BaseException):
            following = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        current = following
    return found


# ----- turning the environment's failures into sidkit errors ----------------------------------------

_ERRNO_IN_TEXT = re.compile(r"(?:os error|errno|code:)\s*(\d+)", re.IGNORECASE)
_TEXT_ERRNO = (("no space left", errno.ENOSPC), ("disk quota", errno.EDQUOT), ("read-only file system", errno.EROFS),
               ("permission denied", errno.EACCES), ("is a directory", errno.EISDIR),
               ("not a directory", errno.ENOTDIR), ("file exists", errno.EEXIST),
               ("no such file", errno.ENOENT))


def os_errno(error: BaseException) -> int | None:
    """The errno of ``error``: its own, or one named in its text (pyarrow and safetensors keep it there)."""
    code = getattr(error, "errno", None)
    if isinstance(code, int) and code > 0:
        return code
    text = str(error)
    match = _ERRNO_IN_TEXT.search(text)
    if match:
        return int(match.group(1))
    lowered = text.lower()
    for words, number in _TEXT_ERRNO:
        if words in lowered:
            return number
    return None


def storage_error(error: BaseException, path: str | os.PathLike[str] | None = None) -> StorageError:
    """A one-line :class:`StorageError` for an ``OSError`` (or a library error wrapping one) about ``path``
    (default: the file name the error carries)."""
    code = os_errno(error)
    name = path if path is not None else (getattr(error, "filename", None) or None)
    where = str(name) if name is not None else None
    shown = where or "the output"
    parent = str(Path(where).parent) if where else "the folder"
    if code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        problem = ("the disk is full" if code == errno.ENOSPC else "the disk quota is used up"
                   if code == errno.EDQUOT else "the file is too large for its file system")
        return StorageError(f"cannot write {shown}: {problem}", where=where,
                            fix="free space on that disk (`df -h` shows it), or write to another one")
    if code == errno.EROFS:
        return StorageError(f"cannot write {shown}: it is on a read-only file system", where=where,
                            fix="write to a folder on a writable disk")
    if code in (errno.EACCES, errno.EPERM):
        return StorageError(f"permission denied for {shown}", where=where,
                            fix=f"choose a path you may use, or change the permissions (`ls -ld {parent}`)")
    if code == errno.EISDIR:
        return StorageError(f"{shown} is a directory, and a file is needed there", where=where,
                            fix="pass a file path (or remove the directory)")
    if code == errno.ENOTDIR:
        return StorageError(f"part of the path {shown} is a file, not a directory", where=where,
                            fix="remove or rename that file, or choose another path")
    if code == errno.EEXIST:
        return StorageError(f"{shown} exists already and is in the way", where=where,
                            fix="choose another path, or remove it")
    if code == errno.ENOENT:
        return StorageError(f"{shown} does not exist", where=where, fix="check the path")
    if code == errno.ENAMETOOLONG:
        return StorageError(f"the path {shown} is too long", where=where, fix="choose a shorter path")
    if code in (errno.EMFILE, errno.ENFILE):
        return StorageError("too many open files", where=where,
                            fix="raise the limit (`ulimit -n 4096`) or close other programs")
    if code == errno.EIO:
        return StorageError(f"input/output error on {shown}", where=where,
                            fix="check the disk or network file system, then run again")
    reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
    return StorageError(f"cannot use {shown}: {reason}", where=where,
                        fix="check the path, its permissions and the disk")


def memory_error(error: BaseException) -> ResourceError:
    """A one-line :class:`ResourceError` with the size asked for, from numpy's, torch's or a plain
    ``MemoryError`` (or torch's ``can't allocate memory`` RuntimeError)."""
    asked = None
    size = getattr(error, "_total_size", None)  # numpy's _ArrayMemoryError
    shape, dtype = getattr(error, "shape", None), getattr(error, "dtype", None)
    if isinstance(size, int):
        asked = f"{format_bytes(size)} for an array of shape {tuple(shape or ())} ({dtype})"
    else:
        match = re.search(r"allocate (\d+) bytes", str(error)) or re.search(r"allocate ([\d.]+ [KMGTP]i?B)",
                                                                            str(error))
        if match:
            value = match.group(1)
            asked = format_bytes(int(value)) if value.isdigit() else value
    problem = f"not enough memory: asked for {asked}" if asked else "not enough memory"
    return ResourceError(problem, where="memory",
                         fix="use smaller sizes (fewer rows per batch or chunk, a smaller latent or codebook "
                         "size, fewer items), or run on a machine with more memory")


def explain(error: BaseException) -> SidkitError | None:
    """``error`` as a :class:`SidkitError` when it is an expected failure of the environment; None for
    anything else (a bug, which should keep its traceback)."""
    if isinstance(error, SidkitError):
        return error
    if isinstance(error, KeyboardInterrupt):
        return Interrupted("interrupted (Ctrl-C); outputs were left as they were",
                           fix="run the command again to redo the work")
    if isinstance(error, MemoryError) or _is_torch_out_of_memory(error):
        return memory_error(error)
    if isinstance(error, OSError):
        return storage_error(error)
    if type(error).__name__ == "SafetensorError" and os_errno(error) is not None:
        return storage_error(error)
    return None


def _is_torch_out_of_memory(error: BaseException) -> bool:
    if not isinstance(error, RuntimeError):
        return False
    if type(error).__name__ == "OutOfMemoryError":
        return True
    text = str(error)
    return "can't allocate memory" in text or "out of memory" in text.lower()


def format_bytes(size: int) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
