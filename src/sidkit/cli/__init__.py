"""The ``sidkit`` command line: a thin layer over the Python API.

Every command prints an example in its ``--help``. Errors that sidkit raises on purpose print one
readable line (what, where, how to fix) and exit with status 2 instead of a traceback. Each module
here registers its commands on the shared ``app`` when imported.
"""

from __future__ import annotations

from sidkit.cli import compare, data, rank, scale, tokens  # noqa: F401  (register commands)
from sidkit.cli.app import app, err_console
from sidkit.errors import SidkitError


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; sidkit's own errors become one readable line and exit status 2."""
    try:
        app(args=argv, prog_name="sidkit")
    except SidkitError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    except SystemExit as exc:  # click exits after --help, usage errors and normal completion
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0

