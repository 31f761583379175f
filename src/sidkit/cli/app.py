"""The Typer application, its consoles, and options shared by several commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    name="sidkit",
    help="Semantic IDs for recommendation: data, tokenizers, diagnostics and rankers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
console = Console()
err_console = Console(stderr=True)

DataDir = Annotated[Path, typer.Option("--data", help="Dataset directory (items.parquet, interactions.parquet, ...).")]
OutDir = Annotated[Path, typer.Option("--out", help="Directory to write.")]
Device = Annotated[str, typer.Option(help="torch device: cpu or cuda.")]
