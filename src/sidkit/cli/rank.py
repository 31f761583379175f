"""`sidkit rank` and `sidkit predict`: multi-task rankers over hashed ids, Semantic-ID features and dense
content, over seeds; and scoring new impressions with a saved ranker."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from sidkit.cli.app import (
    DataDir,
    Device,
    OutDir,
    ProgressFlag,
    Threads,
    app,
    check_out_dir,
    console,
    use_progress,
    use_threads,
)

if TYPE_CHECKING:
    from sidkit.ranking.experiment import RankingExperiment

DEFAULT_FEATURES = "hash,sid-unigram,sid-bigram,sid-prefix,sid-spm,dense,hash+sid-prefix"


def _names(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(part.strip() for part in text.split(",") if part.strip())


@app.command("rank")
def rank(
    data: DataDir,
    out: OutDir,
    tokenizer: Annotated[Path | None, typer.Option(
        "--tokenizer", help="Tokenizer directory (`sidkit fit`) that encodes DIR/embeddings.npy, or a codes "
        ".parquet with item_id; needed by sid-* features.")] = None,
    features: Annotated[str, typer.Option(help="Comma-separated feature sets; combine with '+'; 'name@rows' gives "
                                          "one its own table size (e.g. sid-spm@512).")] = DEFAULT_FEATURES,
    model: Annotated[str, typer.Option(help="Ranker: dnn, shared-bottom, mmoe, ple, dtn (or any "
                                       "registered).")] = "mmoe",
    seeds: Annotated[int, typer.Option(help="Seeds 0..n-1: each gets its own hold-outs, negatives and init.")] = 5,
    budget: Annotated[str, typer.Option(help="Table rows of every feature set (size-matched), then optional sweep "
                                        "budgets as rows or shares of the catalog: 4096,1/4,1/16.")] = "4096",
    sweep_features: Annotated[str | None, typer.Option(help="Features repeated at the sweep budgets (default: every "
                                                       "table feature without its own budget).")] = None,
    natural_size: Annotated[bool, typer.Option("--natural-size", help="Give every table its natural (exact) "
                                               "size instead of --budget (not size-matched).")] = False,
    history: Annotated[int, typer.Option(help="Engaged items in each impression's history.")] = 20,
    negatives: Annotated[int, typer.Option(help="Sampled negatives per engagement.")] = 2,
    item_holdout: Annotated[float, typer.Option(help="Share of engaged items removed from training "
                                                "(the test 'new' slice).")] = 0.2,
    valid_item_holdout: Annotated[float, typer.Option(help="Share of engaged items removed from training and test "
                                                      "(the validation 'new' slice).")] = 0.1,
    split: Annotated[str, typer.Option(help="user-time (per user by time) or global-time.")] = "user-time",
    epochs: Annotated[int, typer.Option(help="Most training epochs (early stopping on validation).")] = 30,
    patience: Annotated[int, typer.Option(help="Epochs without a better validation score before stopping.")] = 2,
    select: Annotated[str, typer.Option(help="Which epoch to keep: best validation AUC on 'all' impressions, or "
                                        "'all+new' (its mean with context-matched new items); both are "
                                        "tested.")] = "all",
    batch_size: Annotated[int, typer.Option(help="Training impressions per step.")] = 2048,
    learning_rate: Annotated[float, typer.Option(help="Adam step size.")] = 3e-3,
    embedding_dim: Annotated[int, typer.Option(help="Width of every embedding.")] = 32,
    user_features: Annotated[str | None, typer.Option(help="users.parquet columns to use as user features "
                                                      "(default: every column but user_id and id-like ones).")] = None,
    context_features: Annotated[str | None, typer.Option(help="interactions.parquet context columns (not ids, time, "
                                                         "rating or 0/1 labels) to use (default: all).")] = None,
    tasks: Annotated[str | None, typer.Option(help="Label tasks to train (default: every task of the data).")] = None,
    max_users: Annotated[int | None, typer.Option(help="A random sample of this many users, for quick runs.")] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes; feature x seed runs go in parallel.")] = 1,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="CPU threads of each worker. Default: OMP_NUM_THREADS if set, else the physical cores "
        "this process may use, divided among the --jobs workers; 1 on a machine shared with other jobs.",
        show_default=False)] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    save_models: Annotated[bool, typer.Option("--save-models/--no-save-models",
                                              help="Save every trained ranker under OUT/models.")] = True,
    match_params: Annotated[str | None, typer.Option(
        "--match-params", help="Resize --model's experts (mmoe, ple) or hidden layers (dnn, shared-bottom) to the "
        "parameter count this model (e.g. dtn) has on the same data and features.")] = None,
    importance: Annotated[int, typer.Option("--importance", help="Permutations per field for per-task validation "
                                            "importance of every run (0: none).")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Write into a non-empty --out: replace a ranking "
                                            "run with other settings (the same settings resume it).")] = False,
    device: Device = "cpu",
    progress: ProgressFlag = None,
) -> None:
    """Train a ranker per feature set, budget and seed; write metrics.json, summary.md, report.html, models/.

    Example: `sidkit rank --data data/ml-100k --tokenizer models/rqk --seeds 5 --out runs/rank`

    Budget sweep: `sidkit rank --data d --tokenizer rqk --features hash,sid-prefix --budget 4096,1/4,1/16 --out r`

    Running again into the same --out with the same settings resumes: finished runs are kept.
    """
    from sidkit.io import staging_dir
    from sidkit.ranking.experiment import RankSettings, is_rank_run, run_ranking
    from sidkit.threads import check_threads, default_threads

    per_worker = check_threads(threads, where="--threads")
    if per_worker is None:
        per_worker = max(1, default_threads()[0] // max(jobs, 1))

    use_progress(progress)
    if not (is_rank_run(out) or staging_dir(out).is_dir()):
        check_out_dir(out, overwrite)  # a ranking run directory is resumed or replaced by run_ranking
    budgets = [part.strip() for part in budget.split(",") if part.strip()]
    main_budget = None
    if not natural_size:
        from sidkit.errors import ConfigError

        if not budgets or not budgets[0].isdigit():
            raise ConfigError(f"the first --budget must be rows, got {budget!r}", where="--budget",
                              fix="pass e.g. --budget 4096 or --budget 4096,1/4,1/16")
        main_budget = int(budgets[0])
    settings = RankSettings(features=tuple(features.split(",")), model=model, seeds=seeds, budget=main_budget,
                            sweep=tuple(budgets[1:]), sweep_features=_names(sweep_features), history=history,
                            negatives=negatives, item_holdout=item_holdout, valid_item_holdout=valid_item_holdout,
                            split=split, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                            patience=patience, select=select, embedding_dim=embedding_dim,
                            user_features=_names(user_features), context_features=_names(context_features),
                            tasks=_names(tasks), max_users=max_users,
                            device=device, jobs=jobs, threads=per_worker, save_models=save_models,
                            importance_repeats=importance, match_params=match_params)
    result = run_ranking(data, tokenizer, out, settings, report=report, overwrite=overwrite,
                         log=lambda line: console.print(f"[dim]{line}[/]", highlight=False))
    print_summary(result, report=report)


def print_summary(result: RankingExperiment, *, report: bool = True) -> None:
    """The compact table of ``result``, its warnings, and where its files are."""
    from sidkit.ranking.summary import interval_note, seeds_phrase, table_rows

    headers, rows = table_rows(result)
    table = Table(title=f"test AUC on {result.data_dir.name} ({seeds_phrase(result.num_seeds)})",
                  caption=interval_note(result))
    for header in headers:
        table.add_column(header, justify="left" if header == "features" else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for line in result.warnings:
        console.print(f"[yellow]warning:[/] {line}", highlight=False)
    console.print(f"metrics: {result.metrics_path}\nsummary: {result.summary_path}")
    if report:
        console.print(f"report:  {result.report_path}")


@app.command("predict")
def predict_command(
    ranker: Annotated[Path, typer.Option("--ranker", help="A saved ranker: a directory under a rank run's models/ "
                                         "(config.json + weights.safetensors).")],
    impressions: Annotated[Path, typer.Option("--impressions", help="Parquet of impressions to score: user_id, "
                                              "item_id, timestamp, and the ranker's context columns (every "
                                              "column is copied through).")],
    data: DataDir,
    out: Annotated[Path, typer.Option("--out", help="Parquet file to write: the impressions plus one p_<task> "
                                      "column per task.")],
    threads: Threads = None,
) -> None:
    """Score new impressions with a saved ranker; histories come from DIR's engagements before each time.

    Example: `sidkit predict --ranker run/models/sid-prefix/seed-0 --impressions new.parquet --data d --out s.parquet`
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from sidkit.data.dataset import load_dataset
    from sidkit.errors import DataError
    from sidkit.io import atomic_path
    from sidkit.ranking.saved import impressions_table_columns, load_ranker, score_impressions

    use_threads(threads)
    if not impressions.is_file():
        raise DataError(f"{impressions} does not exist", where="--impressions", fix="pass a parquet file")
    try:
        table = pq.read_table(impressions)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read {impressions} as parquet: {exc}", where="--impressions",
                        fix="write the impressions with pyarrow.parquet.write_table") from None
    columns = impressions_table_columns(table)
    saved = load_ranker(ranker)
    dataset = load_dataset(data, embeddings=False)
    context = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    scores = score_impressions(saved, columns["user_id"], columns["item_id"], columns["timestamp"],
                               engagements=dataset.interactions, users=dataset.users, context=context)
    for task, values in scores.items():
        table = table.append_column(f"p_{task}", pa.array(np.asarray(values, dtype=np.float32)))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    console.print(f"scored {table.num_rows:,} impressions for {', '.join(scores)}: {out}")
