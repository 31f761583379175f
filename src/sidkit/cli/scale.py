"""Commands for catalogs at scale: `sidkit assign` and `sidkit lookup` (the SID registry), and the
streaming / Ray paths behind `sidkit encode` and `sidkit diagnose --backend`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from sidkit.cli.app import ProgressFlag, Threads, app, check_out_dir, console, use_progress, use_threads
from sidkit.errors import SidkitError

if TYPE_CHECKING:  # the diagnostics import torch: only when a command runs, so `sidkit --help` stays fast
    from sidkit.diagnostics.basic import BasicDiagnostics

BACKENDS = ("local", "ray")
Backend = Annotated[str, typer.Option("--backend", help="local (stream in this process) or ray (Ray Data; "
                                      "needs `pip install 'sidkit[ray]'`).")]
RayAddress = Annotated[str | None, typer.Option("--address", help="Ray cluster to join (`auto`, or "
                                                "ray://HOST:10001); default: start a local Ray.")]
RayActors = Annotated[int | None, typer.Option("--actors", help="Ray tokenizer actors (default: one per CPU).")]
ChunkRows = Annotated[int, typer.Option("--chunk-rows", help="Rows read and encoded at a time (memory grows with it).")]


def embeddings_path(embeddings: Path | None, data: Path | None) -> Path:
    """The input to stream: ``--embeddings`` (.npy, .parquet, a parquet directory) or the ``--data`` directory."""
    if (embeddings is None) == (data is None):
        raise SidkitError("give exactly one of --embeddings and --data", where="options",
                          fix="pass --embeddings X.npy (or .parquet, or a parquet directory), or --data DIR")
    if embeddings is not None:
        return embeddings
    assert data is not None
    if not (data / "embeddings.npy").is_file():
        raise SidkitError(f"{data / 'embeddings.npy'} does not exist", where="--data",
                          fix=f"run `sidkit embed --data {data}` first")
    return data


def _check_backend(backend: str, address: str | None) -> str:
    choice = backend.strip().lower()
    if choice not in BACKENDS:
        raise SidkitError(f"unknown backend {backend!r}", where="--backend", fix=f"use one of {', '.join(BACKENDS)}")
    if address is not None and choice != "ray":
        raise SidkitError("--address applies to --backend ray only", where="--address", fix="add --backend ray")
    return choice


def encode_command(model: Path, out: Path, embeddings: Path | None, data: Path | None, *, chunk_rows: int,
                   device: str, backend: str = "local", address: str | None = None,
                   actors: int | None = None, overwrite: bool = False) -> None:
    """`sidkit encode`: stream the input through the tokenizer into ``out``, locally or on Ray."""
    choice = _check_backend(backend, address)
    source_path = embeddings_path(embeddings, data)
    if choice == "ray":
        from sidkit.backends.ray_backend import RayOptions, ray_encode

        check_out_dir(out, overwrite)
        options = RayOptions(address=address, actors=actors, batch_rows=chunk_rows, device=device)
        on_ray = ray_encode(model, source_path, out, options)
        console.print(f"wrote {on_ray.num_items:,} Semantic IDs ({on_ray.levels} levels) as parquet files under "
                      f"{out} in {on_ray.seconds:.1f} s (Ray)")
        return
    from sidkit.stream.encode import stream_encode
    from sidkit.stream.source import open_embeddings
    from sidkit.stream.writers import SUFFIXES
    from sidkit.tokenizers.base import load_tokenizer

    if out.suffix.lower() not in SUFFIXES:
        raise SidkitError(f"unsupported output type '{out.suffix}'", where="--out", fix="use .npy or .parquet")
    tokenizer = load_tokenizer(model, device=device)
    item_ids: object = "source"
    if data is not None:
        from sidkit.data.dataset import load_dataset

        item_ids = load_dataset(data, embeddings=False).catalog.item_ids
    source = open_embeddings(source_path if data is None else source_path / "embeddings.npy")
    result = stream_encode(tokenizer, source, out, item_ids=item_ids, chunk_rows=chunk_rows)  # type: ignore[arg-type]
    console.print(f"wrote {result.num_items:,} Semantic IDs ({result.levels} levels) to {out}")


def diagnose_result(model: Path, embeddings: Path | None, data: Path | None, *, device: str,
                    backend: str = "local", address: str | None = None) -> BasicDiagnostics:
    """`sidkit diagnose`'s numbers: usage and reconstruction, streamed locally or computed on Ray."""
    choice = _check_backend(backend, address)
    source_path = embeddings_path(embeddings, data)
    if choice == "ray":
        from sidkit.backends.ray_backend import RayOptions, ray_diagnose

        return ray_diagnose(model, source_path, RayOptions(address=address, device=device))
    from sidkit.stream.metrics import stream_diagnose
    from sidkit.stream.source import open_embeddings
    from sidkit.tokenizers.base import load_tokenizer

    tokenizer = load_tokenizer(model, device=device)
    return stream_diagnose(tokenizer, open_embeddings(source_path if data is None else source_path / "embeddings.npy"))


@app.command("assign")
def assign(
    model: Annotated[Path, typer.Option("--model", help="The registry's frozen tokenizer (from `sidkit fit`).")],
    registry: Annotated[Path, typer.Option("--registry", help="SQLite registry file (created if missing).")],
    data: Annotated[Path | None, typer.Option("--data", help="Dataset directory: items.parquet (item_id) and "
                                              "embeddings.npy.")] = None,
    embeddings: Annotated[Path | None, typer.Option("--embeddings", help="Or a parquet file/directory with "
                                                    "item_id and embedding columns.")] = None,
    chunk_rows: ChunkRows = 65_536,
    progress: ProgressFlag = None,
    threads: Threads = None,
) -> None:
    """Give new items SIDs in a registry; items already there keep theirs.

    Colliding items are told apart by a dedup digit (the last level): new colliders take the next free
    value. The whole assign is one transaction: if it fails or is killed, the registry is unchanged.

    Example: `sidkit assign --model models/rqk --registry sids.sqlite --data data/ml-100k`
    """
    from sidkit.registry import assign as assign_items
    from sidkit.stream.source import open_dataset_embeddings, open_embeddings

    use_progress(progress)

    use_threads(threads)
    path = embeddings_path(embeddings, data)
    source = open_dataset_embeddings(path) if data is not None else open_embeddings(path)
    result = assign_items(registry, model, source, chunk_rows=chunk_rows)
    console.print(f"assigned {result.added:,} new items ({result.collided:,} with a dedup digit above 0); "
                  f"{result.existing:,} were registered already and kept their SIDs; {result.total:,} items in "
                  f"{registry} ({result.seconds:.1f} s)")


@app.command("lookup")
def lookup(
    item_ids: Annotated[list[str], typer.Argument(help="Item ids to look up.", show_default=False)],
    registry: Annotated[Path, typer.Option("--registry", help="SQLite registry file written by `sidkit assign`.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: id -> SID string, null if unknown.")] = False,
) -> None:
    """Print the SIDs of items in a registry (codes, then the dedup digit).

    Exits with status 1 when an id is not registered.

    Example: `sidkit lookup --registry sids.sqlite 1 2 50`
    """
    from sidkit.registry import SidRegistry

    with SidRegistry(registry, readonly=True) as opened:
        found = opened.lookup(item_ids)
    by_text = {str(key): value for key, value in found.items()}
    missing = [item for item in item_ids if item not in by_text]
    if as_json:
        console.print_json(json.dumps({item: by_text[item].to_string() if item in by_text else None
                                       for item in item_ids}))
    else:
        table = Table(title=f"SIDs in {registry}")
        table.add_column("item_id")
        table.add_column("sid (codes-dedup)")
        for item in item_ids:
            table.add_row(item, by_text[item].to_string() if item in by_text else "[red]not registered[/]")
        console.print(table)
    if missing:
        raise typer.Exit(code=1)
