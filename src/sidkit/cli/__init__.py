"""The ``sidkit`` command line: a thin layer over the Python API.

Every command prints an example in its ``--help``. Errors that sidkit raises on purpose print one
readable line (what, where, how to fix) and exit with status 2 instead of a traceback. Warnings print
as one line each (no source line), and under torchrun only on rank 0. Each module here registers its
commands on the shared ``app`` when imported.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, TextIO

from rich.markup import escape

from sidkit.cli import compare, data, rank, retrieve, scale, tokens  # noqa: F401  (register commands)
from sidkit.cli.app import app, err_console
from sidkit.errors import SidkitError


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; sidkit's own errors become one readable line and exit status 2."""
    with warnings.catch_warnings():
        warnings.showwarning = show_warning
        if _torchrun_rank() > 0:  # every rank would print the same warning: rank 0 speaks for all
            warnings.simplefilter("ignore")
        try:
            app(args=argv, prog_name="sidkit")
        except SidkitError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            return 2
        except SystemExit as exc:  # click exits after --help, usage errors and normal completion
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            from sidkit.progress import set_progress

            set_progress(None)  # a command's --progress choice ends with it (main may run again in-process)
    return 0


def show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                 file: TextIO | None = None, line: str | None = None) -> None:
    """One line per warning, ``warning: <message>``: the user needs the message, not sidkit's source line."""
    label = "" if category in (UserWarning, RuntimeWarning) else f" ({category.__name__})"
    err_console.print(f"[bold yellow]warning:[/] {escape(str(message))}{label}", highlight=False, soft_wrap=True)


def _torchrun_rank() -> int:
    value: Any = os.environ.get("RANK", "0")
    return int(value) if str(value).isdigit() else 0
