"""`sidkit data ...` and `sidkit embed`: fetch, generate, import, inspect and embed datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

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
from sidkit.errors import SidkitError

data_app = typer.Typer(help="Fetch, generate and inspect dataset directories.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("fetch")
def data_fetch(
    name: Annotated[str, typer.Argument(help="Dataset name: movielens-100k or movielens-1m.")],
    out: OutDir,
    source: Annotated[Path | None, typer.Option(help="Local GroupLens or RecBole directory of that dataset "
                                                "instead of downloading.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Write a public dataset as a dataset directory.

    Example: `sidkit data fetch movielens-100k --out data/ml-100k`

    Larger: `sidkit data fetch movielens-1m --out data/ml-1m`
    """
    from sidkit.data.dataset import save_dataset

    key = name.lower()
    if key in ("movielens-100k", "ml-100k"):
        from sidkit.data.movielens import load_movielens_100k as load
    elif key in ("movielens-1m", "ml-1m"):
        from sidkit.data.movielens_1m import load_movielens_1m as load
    else:
        raise SidkitError(f"unknown dataset '{name}'", where="NAME", fix="use movielens-100k or movielens-1m")
    check_out_dir(out, overwrite)
    dataset = load(source)
    save_dataset(dataset, out)
    _print_info(out)


@data_app.command("synth")
def data_synth(
    out: OutDir,
    items: Annotated[int, typer.Option(help="Number of items.")] = 10_000,
    users: Annotated[int, typer.Option(help="Number of users.")] = 2_000,
    interactions: Annotated[int, typer.Option(help="Number of impressions.")] = 200_000,
    dim: Annotated[int, typer.Option(help="Embedding dimension.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 0,
    overwrite: Overwrite = False,
    threads: Threads = None,
) -> None:
    """Generate a synthetic dataset with a known topic hierarchy, labels `click` and `like`.

    Example: `sidkit data synth --items 100000 --users 20000 --interactions 2000000 --seed 0 --out data/synth`
    """
    from sidkit.data.synthetic import SyntheticConfig, write_synthetic

    use_threads(threads)
    config = SyntheticConfig(items=items, users=users, interactions=interactions, dim=dim, seed=seed)
    write_synthetic(config, out, overwrite=overwrite)
    _print_info(out)


@data_app.command("import")
def data_import(
    out: OutDir,
    items: Annotated[Path | None, typer.Option(help="Items file (.parquet/.csv/.tsv) with item_id and text.")] = None,
    interactions: Annotated[Path | None, typer.Option(help="Interactions file (.parquet/.csv/.tsv) with user_id, "
                                                      "item_id, timestamp, and rating/label columns.")] = None,
    recbole: Annotated[Path | None, typer.Option(help="Or a RecBole dataset: the directory holding NAME.inter, "
                                                 "NAME.item (and NAME.user), or the .inter file.")] = None,
    column_map: Annotated[list[str] | None, typer.Option(
        "--map", help="NAME=COLUMN: read sidkit's column NAME (user_id, item_id, timestamp, rating, text, a "
        "label) from your COLUMN; repeat it, e.g. --map user_id=userId --map item_id=movieId.")] = None,
    embeddings: Annotated[Path | None, typer.Option(help="Embeddings (.npy or .parquet), aligned "
                                                    "with the items file.")] = None,
    users: Annotated[Path | None, typer.Option(help="Optional user features file.")] = None,
    overwrite: Overwrite = False,
) -> None:
    """Validate your own files (or a RecBole dataset) and write them as a dataset directory.

    Example: `sidkit data import --items items.csv --interactions events.parquet --embeddings emb.npy --out data/mine`

    Other names: `sidkit data import --items movies.csv --interactions ratings.csv --map item_id=movieId
    --map user_id=userId --map text=title --out data/ml`

    RecBole: `sidkit data import --recbole dataset/ml-100k --out data/ml-100k`
    """
    from sidkit.data.dataset import save_dataset
    from sidkit.data.files import dataset_from_files, parse_column_mapping

    mapping = parse_column_mapping(column_map or [])
    if recbole is not None:
        if items is not None or interactions is not None or users is not None or embeddings is not None:
            raise SidkitError("--recbole reads items, interactions and users from the atomic files", where="options",
                              fix="give either --recbole DIR or --items and --interactions")
        from sidkit.data.recbole import load_recbole

        check_out_dir(out, overwrite)
        save_dataset(load_recbole(recbole, columns=mapping), out)
        _print_info(out)
        return
    if items is None or interactions is None:
        raise SidkitError("give --items and --interactions, or --recbole", where="options",
                          fix="e.g. --items items.csv --interactions events.csv")
    check_out_dir(out, overwrite)
    save_dataset(dataset_from_files(items, interactions, embeddings, users, columns=mapping), out)
    _print_info(out)


@data_app.command("info")
def data_info(directory: Annotated[Path, typer.Argument(help="Dataset directory.")]) -> None:
    """Summarize a dataset directory: counts, time range, columns, embeddings.

    Example: `sidkit data info data/ml-100k`
    """
    _print_info(directory)


@app.command("embed")
def embed(
    data: DataDir,
    model: Annotated[str | None, typer.Option(
        "--model", help="sentence-transformers model: a local directory, or a name already in the Hugging "
        "Face cache (e.g. all-mpnet-base-v2). Default: the bundled all-MiniLM-L6-v2.",
        show_default=False)] = None,
    batch_size: Annotated[int, typer.Option(help="Texts per batch.")] = 128,
    device: Device = "cpu",
    progress: ProgressFlag = None,
    threads: Threads = None,
) -> None:
    """Embed item text into DIR/embeddings.npy (the bundled all-MiniLM-L6-v2, or --model).

    Example: `sidkit embed --data data/ml-100k`

    Another model: `sidkit embed --data data/ml-100k --model models/my-sentence-transformer`
    """
    from sidkit.embed import embed_dataset

    use_progress(progress)

    use_threads(threads)
    embed_dataset(data, model=model, batch_size=batch_size, device=device)
    _print_info(data)


def _print_info(directory: Path) -> None:
    from sidkit.data.summary import summarize_dataset

    summary = summarize_dataset(directory)
    table = Table(title=f"dataset {directory}", show_header=False)
    for key, value in summary.rows():
        table.add_row(key, value)
    console.print(table)


