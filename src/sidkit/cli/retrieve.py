"""`sidkit retrieve`: next-item retrieval (TIGER on SIDs, SASRec, popularity) over seeds, and the diagnostics study."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from sidkit.cli.app import (
    DataDir,
    Device,
    OutDir,
    Overwrite,
    ProgressFlag,
    Threads,
    app,
    check_out_dir,
    console,
    use_progress,
    use_threads,
)
from sidkit.errors import ConfigError

if TYPE_CHECKING:
    from sidkit.retrieval.experiment import RetrievalExperiment


@app.command("retrieve")
def retrieve(
    data: DataDir,
    out: OutDir,
    tokenizer: Annotated[Path | None, typer.Option(
        "--tokenizer", help="Tokenizer directory (`sidkit fit`) or codes .parquet giving tiger its SIDs.")] = None,
    tokenizers: Annotated[str, typer.Option(
        help="Comma-separated tokenizer methods fitted per seed (e.g. rq-kmeans,rq-vae,rqp-vae,drq-vae,drq-vae-cl,"
        "random); with them the run correlates each diagnostic with tiger's Recall@10.")] = "",
    random_sids: Annotated[bool, typer.Option("--random-sids", help="Also run tiger on random SIDs of the same "
                                              "shapes (drawn per seed).")] = False,
    models: Annotated[str, typer.Option("--models", "--model", help="Comma-separated: tiger, sasrec, popularity.")] = (
        "tiger,sasrec,popularity"),
    seeds: Annotated[int, typer.Option(help="Seeds 0..n-1.")] = 3,
    split: Annotated[str, typer.Option(help="leave-one-out or global-time.")] = "leave-one-out",
    history: Annotated[int, typer.Option(help="History items per example.")] = 20,
    item_holdout: Annotated[float, typer.Option(help="Share of items kept out of training (the 'new' slice).")] = 0.0,
    new_item_share: Annotated[float, typer.Option(help="Share of each ranked list reserved for items never seen in "
                                                  "training (TIGER's cold-start protocol; 0.1: positions 10 "
                                                  "and 20), for every model.")] = 0.0,
    k: Annotated[str, typer.Option("--k", help="Comma-separated cutoffs K of Recall@K and NDCG@K.")] = "5,10,20",
    beam: Annotated[int, typer.Option(help="Beams of tiger's constrained search (at least the largest K).")] = 20,
    levels: Annotated[int, typer.Option(help="Levels of tokenizers fitted with --tokenizers / --random-sids.")] = 3,
    codebook_size: Annotated[int | None, typer.Option(help="Codes per level of fitted tokenizers (default: "
                                                      "sidkit compare's).")] = None,
    tokenizer_epochs: Annotated[int | None, typer.Option(help="Epochs of fitted neural tokenizers (default: "
                                                         "theirs, early-stopped).")] = None,
    tiger_epochs: Annotated[int, typer.Option(help="Most tiger epochs (early stopping on validation Recall@10; "
                                              "a guard, patience ends training).")] = 60,
    windows_per_user: Annotated[int, typer.Option(help="Tiger training windows per user per epoch.")] = 4,
    sasrec_epochs: Annotated[int, typer.Option(help="Most sasrec epochs (early stopping on validation "
                                               "Recall@10; a guard, patience ends training).")] = 50,
    precision: Annotated[str, typer.Option(help="auto, float32 or bfloat16 (autocast).")] = "auto",
    threads: Threads = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    progress: ProgressFlag = None,
    overwrite: Overwrite = False,
    device: Device = "cpu",
) -> None:
    """Train and test next-item retrievers over seeds; write metrics.json, summary.md, report.html, runs.jsonl.

    Example: `sidkit retrieve --data data/ml-1m --tokenizer models/rqk --random-sids --seeds 3 --out runs/ret`

    Study: `sidkit retrieve --data data/ml-1m --tokenizers rq-kmeans,rq-vae,rqp-vae,drq-vae,drq-vae-cl,random
    --models tiger,sasrec,popularity --seeds 3 --out runs/study`
    """
    use_progress(progress)
    use_threads(threads)
    check_out_dir(out, overwrite)
    from sidkit.retrieval.experiment import RetrieveSettings, run_retrieval
    from sidkit.retrieval.sasrec import SasrecConfig
    from sidkit.retrieval.tiger import TigerConfig

    settings = RetrieveSettings(
        models=tuple(models.split(",")), tokenizers=tuple(tokenizers.split(",")) if tokenizers else (),
        random_sids=random_sids, seeds=seeds, split=split, history=history, item_holdout=item_holdout,
        new_item_share=new_item_share, cutoffs=_ints(k, "--k"), levels=levels, codebook_size=codebook_size,
        tokenizer_epochs=tokenizer_epochs,
        tiger=replace(TigerConfig(), beam=beam, epochs=tiger_epochs, windows_per_user=windows_per_user,
                      precision=precision),
        sasrec=replace(SasrecConfig(), epochs=sasrec_epochs, precision=precision),
        device=device, threads=None, progress=None)  # use_threads set them
    result = run_retrieval(data, out, settings, tokenizer=tokenizer, report=report,
                           log=lambda line: console.print(f"[dim]{line}[/]", highlight=False))
    print_summary(result, report=report)


def print_summary(result: RetrievalExperiment, *, report: bool = True) -> None:
    """The main table of ``result`` and where its files are."""
    from sidkit.retrieval.report import table_rows

    for slice_name in ("all", "new"):
        headers, rows = table_rows(result, slice_name)
        if not any(row[3] != "-" for row in rows):
            continue
        table = Table(title=f"{result.data_dir.name}, slice {slice_name} ({result.settings.seeds} seeds, "
                      "mean ± 95% CI)")
        for header in headers:
            table.add_column(header, justify="left" if header in ("model", "SIDs") else "right")
        for row in rows:
            table.add_row(*row)
        console.print(table)
    console.print(f"metrics: {result.metrics_path}\nsummary: {result.summary_path}")
    if report:
        console.print(f"report:  {result.report_path}")


def _ints(text: str, where: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"cannot read {text!r} as comma-separated integers", where=where,
                          fix="write e.g. 5,10,20") from None
