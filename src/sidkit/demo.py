"""The end-to-end job behind ``make demo``, on MovieLens-100K (embedded default data).

Run with ``python -m sidkit.demo [--out runs/demo]``. Each stage writes into the output directory and
prints a short summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from sidkit.errors import SidkitError

console = Console()


def run_demo(out: Path) -> None:
    from sidkit.data.dataset import save_dataset
    from sidkit.data.movielens import load_movielens_100k
    from sidkit.data.summary import summarize_dataset
    from sidkit.embed import embed_dataset

    data_dir = out / "ml-100k"
    started = time.perf_counter()
    console.rule("1. data: MovieLens-100K")
    save_dataset(load_movielens_100k(), data_dir)
    console.rule("2. embeddings: all-MiniLM-L6-v2 on title, year and genres")
    embed_dataset(data_dir)
    table = Table(title=f"dataset {data_dir}", show_header=False)
    for key, value in summarize_dataset(data_dir).rows():
        table.add_row(key, value)
    console.print(table)
    console.print(f"demo finished in {time.perf_counter() - started:.1f} s; outputs in {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidkit.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out)
    except SidkitError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
