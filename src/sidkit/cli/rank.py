"""`sidkit rank`: multi-task rankers with hashed ids, Semantic-ID features and dense content, over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from sidkit.cli.app import DataDir, Device, OutDir, Overwrite, ProgressFlag, app, check_out_dir, console, use_progress

if TYPE_CHECKING:
    from sidkit.ranking.experiment import RankingExperiment

DEFAULT_FEATURES = "hash,sid-unigram,sid-bigram,sid-prefix,sid-spm,dense,hash+sid-prefix"


@app.command("rank")
def rank(
    data: DataDir,
    out: OutDir,
    tokenizer: Annotated[Path | None, typer.Option(
        "--tokenizer", help="Tokenizer directory (`sidkit fit`) that encodes DIR/embeddings.npy, or a codes "
        ".parquet with item_id; needed by sid-* features.")] = None,
    features: Annotated[str, typer.Option(help="Comma-separated feature sets; combine with '+'; 'name@rows' gives "
                                          "one its own table size (e.g. sid-spm@512).")] = DEFAULT_FEATURES,
    model: Annotated[str, typer.Option(help="Ranker: dnn, shared-bottom, mmoe, ple (or any registered).")] = "mmoe",
    seeds: Annotated[int, typer.Option(help="Seeds 0..n-1: each gets its own hold-out, negatives and init.")] = 5,
    budget: Annotated[int | None, typer.Option(help="Table rows of every hash / SID representation "
                                               "(size-matched); default: 4096.")] = 4096,
    natural_size: Annotated[bool, typer.Option("--natural-size", help="Give every table its natural (exact) "
                                               "size instead of --budget (not size-matched).")] = False,
    history: Annotated[int, typer.Option(help="Engaged items in each impression's history.")] = 20,
    negatives: Annotated[int, typer.Option(help="Sampled negatives per engagement.")] = 4,
    item_holdout: Annotated[float, typer.Option(help="Share of engaged items removed from training "
                                                "(the 'new' slice).")] = 0.2,
    split: Annotated[str, typer.Option(help="user-time (per user by time) or global-time.")] = "user-time",
    epochs: Annotated[int, typer.Option(help="Most training epochs (early stopping on validation AUC).")] = 4,
    patience: Annotated[int, typer.Option(help="Epochs without a better validation AUC before stopping.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Training impressions per step.")] = 2048,
    learning_rate: Annotated[float, typer.Option(help="Adam step size.")] = 1e-3,
    embedding_dim: Annotated[int, typer.Option(help="Width of every embedding.")] = 32,
    jobs: Annotated[int, typer.Option(help="Worker processes; feature x seed runs go in parallel.")] = 1,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="CPU threads of each worker. Default: OMP_NUM_THREADS if set, else the physical cores "
        "this process may use, divided among the --jobs workers; 1 on a machine shared with other jobs.",
        show_default=False)] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    device: Device = "cpu",
    overwrite: Overwrite = False,
    progress: ProgressFlag = None,
) -> None:
    """Train a ranker per feature set and seed; write metrics.json, summary.md and report.html.

    Example: `sidkit rank --data data/ml-100k --tokenizer models/rqk --seeds 5 --out runs/rank`

    Fewer: `sidkit rank --data data/ml-100k --tokenizer models/rqk --features hash,sid-prefix,dense --out runs/r`
    """
    from sidkit.ranking.experiment import RankSettings, run_ranking
    from sidkit.threads import check_threads, default_threads

    per_worker = check_threads(threads, where="--threads")
    if per_worker is None:
        per_worker = max(1, default_threads()[0] // max(jobs, 1))

    use_progress(progress)
    check_out_dir(out, overwrite)
    settings = RankSettings(features=tuple(features.split(",")), model=model, seeds=seeds,
                            budget=None if natural_size else budget, history=history, negatives=negatives,
                            item_holdout=item_holdout, split=split, epochs=epochs, batch_size=batch_size,
                            learning_rate=learning_rate, patience=patience, embedding_dim=embedding_dim,
                            device=device, jobs=jobs, threads=per_worker)
    result = run_ranking(data, tokenizer, out, settings, report=report,
                         log=lambda line: console.print(f"[dim]{line}[/]", highlight=False))
    print_summary(result, report=report)


def print_summary(result: RankingExperiment, *, report: bool = True) -> None:
    """The main table of ``result`` and where its files are."""
    from sidkit.ranking.experiment import table_rows

    headers, rows = table_rows(result)
    table = Table(title=f"test AUC on {result.data_dir.name} ({result.settings.seeds} seeds, mean ± 95% CI)")
    for header in headers:
        table.add_column(header, justify="left" if header == "features" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"metrics: {result.metrics_path}\nsummary: {result.summary_path}")
    if report:
        console.print(f"report:  {result.report_path}")
