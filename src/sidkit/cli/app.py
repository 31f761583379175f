"""The Typer application, its consoles, and options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console, ConsoleDimensions
from rich.table import Table
from rich.text import Text

from sidkit import __version__

# Off a terminal, lines are as wide as their content: a log file has no width to fit.
PLAIN_WIDTH = 10_000


class CliConsole(Console):
    """rich's Console, in plain text when it does not write to a terminal (a log file, a pipe).

    There, tables come out as markdown tables at their full width (never cells cut to ``0.5…``),
    without colour or control codes, and text lines are not wrapped. ``COLUMNS`` still sets a width.
    """

    @property
    def plain(self) -> bool:
        return not self.is_terminal

    @property
    def size(self) -> ConsoleDimensions:
        dimensions = super().size
        if self.plain and self._width is None and not self._environ.get("COLUMNS", "").isdigit():
            return ConsoleDimensions(PLAIN_WIDTH, dimensions.height)
        return dimensions

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    def print(self, *objects: Any, **kwargs: Any) -> None:
        if self.plain and any(isinstance(item, Table) for item in objects):
            objects = tuple(self._markdown(item) if isinstance(item, Table) else item for item in objects)
        super().print(*objects, **kwargs)

    def _markdown(self, table: Table) -> Text:
        """``table`` as a markdown table (title above it), without the padding lines rich adds."""
        table.box, table.show_edge = box.MARKDOWN, True
        with self.capture() as captured:
            super().print(table)
        lines = [line.rstrip() for line in captured.get().splitlines() if line.strip()]
        return Text("\n".join(lines))


app = typer.Typer(
    name="sidkit",
    help="Semantic IDs for recommendation: data, tokenizers, diagnostics and rankers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = CliConsole()
err_console = CliConsole(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        console.print(f"sidkit {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                                help="Print sidkit's version and exit.")] = False) -> None:
    """Semantic IDs for recommendation: data, tokenizers, diagnostics and rankers."""




def directory_output(path: Path | None) -> Path | None:
    """Option callback: refuse, before any work, an output directory that cannot be written."""
    if path is not None:
        from sidkit.io import check_output_path

        check_output_path(path, directory=True, where="--out")
    return path


def file_output(path: Path | None) -> Path | None:
    """Option callback: refuse, before any work, an output file that cannot be written."""
    if path is not None:
        from sidkit.io import check_output_path

        check_output_path(path, directory=False, where=str(path))
    return path


def known_device(device: str) -> str:
    """Option callback: refuse, before any work, a device that this machine does not have."""
    if device.strip().lower() != "cpu":
        from sidkit.errors import ConfigError
        from sidkit.tokenizers.base import resolve_device

        try:
            resolve_device(device)
        except ConfigError as error:
            raise ConfigError(error.problem, where="--device", fix=error.fix) from None
    return device


DataDir = Annotated[Path, typer.Option("--data", help="Dataset directory (items.parquet, interactions.parquet, ...).")]
OutDir = Annotated[Path, typer.Option("--out", help="Directory to write.", callback=directory_output)]
Device = Annotated[str, typer.Option(help="torch device: cpu or cuda.", callback=known_device)]
ProgressFlag = Annotated[bool | None, typer.Option(
    "--progress/--no-progress", show_default=False,
    help="Progress bars even when stderr is not a terminal / no progress at all. Default: bars on a "
    "terminal, elsewhere (a log) a plain progress line every 20 s of long work.")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --out directory (an "
                                         "earlier output of sidkit) as a whole, in one step at the end.")]


def use_progress(progress: bool | None) -> None:
    """Apply a command's ``--progress/--no-progress`` to everything it runs (see :mod:`sidkit.progress`)."""
    from sidkit.progress import set_progress

    set_progress(progress)


def check_out_dir(out: Path, overwrite: bool, *, option: str = "--out") -> None:
    """Refuse, before any work, an ``--out`` that cannot become the output directory: a file, a path
    under a file or in a folder that cannot be written, or a non-empty directory without ``--overwrite``.
    Write the directory itself with :func:`sidkit.io.atomic_dir`."""
    from sidkit.errors import SidkitError
    from sidkit.io import check_output_path

    check_output_path(out, directory=True, where=option)
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SidkitError(f"{out} is not empty", where=option,
                          fix="choose a new or empty directory, or pass --overwrite to write into it")


Threads = Annotated[int | None, typer.Option(
    "--threads", help="CPU threads (torch and BLAS). Default: OMP_NUM_THREADS if set, else the physical cores "
    "this process may use; 1 on a machine shared with other jobs.", show_default=False)]


def use_threads(threads: int | None) -> None:
    """Apply a command's ``--threads`` (None: sidkit's default, see sidkit.threads) before it computes."""
    from sidkit.threads import check_threads, set_threads

    set_threads(check_threads(threads, where="--threads"))
