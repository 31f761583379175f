"""The ``sidkit`` command line: a thin layer over the Python API.

Every command prints an example in its ``--help``. Every expected failure prints one readable line
(what, where, ``Fix:`` how) and exits with status 2 instead of a traceback: sidkit's own errors, bad
usage, and the environment's (a read-only folder, a full disk, memory that cannot be had; see
:func:`sidkit.errors.explain`). Ctrl-C and SIGTERM stop with one line and status 130 / 143; outputs
are written atomically, so an interrupted command leaves them as they were. Warnings print as one
line each (no source line), and under torchrun only on rank 0. Each module here
registers its commands on the shared ``app`` when imported; a new command needs nothing more to get
this behaviour.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from types import FrameType
from typing import Any, TextIO

import typer
from rich.markup import escape

from sidkit.cli import compare, data, rank, retrieve, scale, tokens  # noqa: F401  (register commands)
from sidkit.cli.app import app, console, err_console
from sidkit.errors import Interrupted, SidkitError, explain, innermost_sidkit_error

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM


class _Terminated(BaseException):
    """SIGTERM, raised where the process is, so that ``finally`` blocks remove temporary outputs."""


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 success, 1 a lookup miss, 2 an error, 130 Ctrl-C)."""
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        if _torchrun_rank() > 0:  # every rank would print the same warning: rank 0 speaks for all
            warnings.simplefilter("ignore")
        try:
            return _run(argv)
        finally:
            from sidkit.progress import set_progress

            set_progress(None)  # a command's --progress choice ends with it (main may run again in-process)


def _run(argv: list[str] | None) -> int:
    """The command, with every expected failure turned into one line and an exit status."""
    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        with _sigterm_raises(), command.make_context("sidkit", args) as ctx:
            command.invoke(ctx)
    except typer.Exit as done:  # --help, --version, typer.Exit(code)
        return int(done.exit_code)
    except (typer.Abort, KeyboardInterrupt):  # Ctrl-C (click's Abort wraps it)
        _print_error(str(explain(KeyboardInterrupt())))
        return EXIT_INTERRUPTED
    except _Terminated:
        _print_error(str(Interrupted("terminated (SIGTERM); outputs were left as they were",
                                     fix="run the command again to redo the work")))
        return EXIT_TERMINATED
    except Exception as failure:
        if type(failure).__name__ == "NoArgsIsHelpError":  # `sidkit data` alone: show its help
            usage_ctx = getattr(failure, "ctx", None)
            console.print(usage_ctx.get_help() if usage_ctx is not None else "", highlight=False)
            return EXIT_ERROR
        if _is_usage_error(failure):  # an unknown option, a missing or malformed value
            _print_error(_usage_line(failure))
            return int(getattr(failure, "exit_code", EXIT_ERROR))
        if isinstance(failure, OSError) and failure.errno == errno.EPIPE:  # `sidkit lookup ... | head`
            return 1
        error = explain(_unwrap(failure))
        if error is None:
            raise  # a bug: keep its traceback
        _print_error(str(error))
        return EXIT_ERROR
    return 0


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """One line per warning, ``warning: <message>``: the user needs the message, not sidkit's source line."""
    label = "" if category in (UserWarning, RuntimeWarning) else f" ({category.__name__})"
    err_console.print(f"[bold yellow]warning:[/] {escape(str(message))}{label}", highlight=False, soft_wrap=True)


def _torchrun_rank() -> int:
    value: Any = os.environ.get("RANK", "0")
    return int(value) if str(value).isdigit() else 0


def _print_error(message: str) -> None:
    # One line, whatever the wrapped library put in its message.
    err_console.print(f"[bold red]error:[/] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)


def _is_usage_error(failure: Exception) -> bool:
    # click's UsageError / BadParameter (vendored by typer, so matched by what they offer, not by class)
    return hasattr(failure, "format_message") and hasattr(failure, "exit_code")


def _usage_line(usage: Exception) -> str:
    ctx = getattr(usage, "ctx", None)
    where = ctx.command_path if ctx is not None else "sidkit"
    message = str(usage.format_message()).rstrip(".")  # type: ignore[attr-defined]
    return str(SidkitError(message, where=where, fix=f"see `{where} --help` for the options and their values"))


def _unwrap(failure: BaseException) -> BaseException:
    """The sidkit error inside a wrapper (a worker pool's, Ray's), else ``failure`` itself."""
    return innermost_sidkit_error(failure) or failure


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the command runs, SIGTERM raises (so cleanup runs) instead of killing the process outright."""
    def handler(_signum: int, _frame: FrameType | None) -> None:
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


__all__ = ["SidkitError", "app", "main"]
