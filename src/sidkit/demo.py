"""The end-to-end job behind ``make demo``, on MovieLens-100K (embedded default data).

Run with ``python -m sidkit.demo [--out runs/demo]``. Stages: data, text embeddings, a comparison of
all tokenizers with every diagnostic and an HTML report, then rankers with hashed-id and Semantic-ID
features. Each stage writes into the output directory and prints a short summary.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from sidkit.errors import SidkitError

# Logs and CI have no terminal width; a wide fixed width keeps the tables readable there.
console = Console() if sys.stdout.isatty() else Console(width=160)


def run_demo(out: Path, *, skip_rank: bool = False) -> None:
    from sidkit.compare import DEFAULT_METHODS, CompareSettings, run_comparison
    from sidkit.data.dataset import save_dataset
    from sidkit.data.movielens import load_movielens_100k
    from sidkit.data.summary import summarize_dataset
    from sidkit.embed import embed_dataset
    from sidkit.report.summary import notes, summary_table

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

    console.rule("3. tokenizers: fit, diagnose, compare")
    # Default settings: neural tokenizers train until their validation loss stops improving.
    comparison = run_comparison(data_dir, DEFAULT_METHODS, out / "compare", CompareSettings(), log=console.print)
    console.print(summary_table(comparison))
    for line in notes(comparison):
        console.print(f"note: {line}", highlight=False)
    console.print(f"tokenizer report: {comparison.report_path}")

    if not skip_rank:
        from sidkit.ranking.experiment import quick_rank

        console.rule("4. ranking: hashed ids vs Semantic-ID features (MMoE, item hold-out, early stopping)")
        ranking = quick_rank(data_dir, out / "rank", log=console.print)
        console.print(_rank_table(ranking.summary_rows(), ranking.num_seeds))
        for line in ranking.warnings:
            console.print(f"warning: {line}", highlight=False)
        console.print(f"ranking report: {ranking.report_path}")
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s; outputs in {out}")


#: The demo's ranking columns: click on all items and on context-matched new items, like given click.
RANK_COLUMNS = ("click/all", "click/new-matched", "like|click/all")


def _rank_table(rows: list[dict[str, Any]], seeds: int = 1) -> Table:
    table = Table(title=f"test AUC ({seeds} seed{'' if seeds == 1 else 's'}; full tables in docs/ranking.md)")
    columns = [c for c in RANK_COLUMNS if rows and c in rows[0]]
    table.add_column("features")
    table.add_column("table rows", justify="right")
    table.add_column("rows used", justify="right")
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        cells = []
        for column in columns:
            mean = row[column]["mean"]
            cells.append("-" if mean is None else f"{mean:.3f}")
        table.add_row(row["feature"], f"{row['table_rows']:,}", f"{row['rows_used']:,}", *cells)
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sidkit.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output directory")
    parser.add_argument("--skip-rank", action="store_true", help="stop after the tokenizer comparison")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, skip_rank=args.skip_rank)
    except SidkitError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
