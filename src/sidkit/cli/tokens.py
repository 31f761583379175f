"""`sidkit fit`, `sidkit encode`, `sidkit diagnose`: tokenizers on embeddings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from sidkit.cli.app import (
    Device,
    Overwrite,
    ProgressFlag,
    Threads,
    app,
    check_out_dir,
    console,
    file_output,
    use_progress,
    use_threads,
)
from sidkit.cli.scale import Backend, ChunkRows, RayActors, RayAddress, diagnose_result, encode_command
from sidkit.errors import SidkitError

if TYPE_CHECKING:
    import numpy as np

    from sidkit.diagnostics.overlap import OverlapReport, OverlapSweep

EmbeddingsFile = Annotated[Path | None, typer.Option("--embeddings", help="Embeddings file (.npy, memory-mapped, "
                                                    "or .parquet).")]
OptionalData = Annotated[Path | None, typer.Option("--data", help="Dataset directory; its embeddings.npy is "
                                                   "used when --embeddings is not given.")]
ModelDir = Annotated[Path, typer.Option("--model", help="Tokenizer directory written by `sidkit fit`.")]


@app.command("fit")
def fit(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the fitted tokenizer to.")],
    method: Annotated[str, typer.Option(help="Tokenizer: rq-kmeans, rq-vae, rqp-vae, drq-vae or drq-vae-cl "
                                        "(needs --data: it trains on the dataset's behaviour pairs).")] = "rq-kmeans",
    levels: Annotated[int, typer.Option(help="Code levels L.")] = 3,
    codebook_size: Annotated[int | None, typer.Option(help="Codes per level K. Default: 256, or for a small "
                                                      "catalog the largest power of two with at least 16 items "
                                                      "per code, at least 8 (1,682 items: 64; 4,096+: 256).",
                                                      show_default=False)] = None,
    embeddings: EmbeddingsFile = None,
    data: OptionalData = None,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same codes.")] = 0,
    device: Device = "cpu",
    balanced: Annotated[bool, typer.Option("--balanced", help="Cap every code's load during fitting "
                                           "(rq-kmeans).")] = False,
    fit_sample: Annotated[int | None, typer.Option(help="Fit each level on at most this many rows "
                                                   "(rq-kmeans; default 256 x K).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Most training epochs (neural methods).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Items per training step (neural methods).")] = None,
    latent_dim: Annotated[int | None, typer.Option(help="Latent dimension (neural methods).")] = None,
    precision: Annotated[str | None, typer.Option(help="Training GEMMs of the neural methods: auto (bfloat16 "
                                                  "where the CPU has it natively), float32 or bfloat16.")] = None,
    overwrite: Overwrite = False,
    progress: ProgressFlag = None,
    threads: Threads = None,
) -> None:
    """Fit a tokenizer on item embeddings and save it.

    Example: `sidkit fit --method rq-kmeans --levels 3 --codebook-size 256 --data data/ml-100k --out models/rqk`

    Neural: `sidkit fit --method drq-vae-cl --codebook-size 64 --epochs 300 --data data/ml-100k --out models/drq-cl`
    """
    from sidkit.checks import check_seed, level_sizes
    from sidkit.distributed import init_from_env, shutdown
    from sidkit.tokenizers.factory import default_codebook_size, make_tokenizer

    use_progress(progress)

    use_threads(threads)
    check_out_dir(out, overwrite)
    check_seed(seed, where="--seed")  # settings first: nothing is read before they are known to be usable
    level_sizes(levels, 2 if codebook_size is None else codebook_size, where="--levels")
    options: dict[str, object] = {}
    if balanced:
        options["balanced"] = True
    if fit_sample is not None:
        options["fit_sample"] = fit_sample
    neural: dict[str, object] = {name: value for name, value in (("epochs", epochs), ("batch_size", batch_size),
                                                                 ("latent_dim", latent_dim)) if value is not None}
    if precision is not None:
        choices = {"auto": None, "float32": False, "bfloat16": True}
        if precision.strip().lower() not in choices:
            raise SidkitError(f"unknown precision '{precision}'", where="--precision",
                              fix="use auto, float32 or bfloat16")
        neural["bfloat16"] = choices[precision.strip().lower()]
    if neural and method.strip().lower() == "rq-kmeans":
        flags = ("precision" if n == "bfloat16" else n.replace("_", "-") for n in neural)
        raise SidkitError(f"--{', --'.join(flags)} apply to the neural methods only",
                          where="options", fix="drop them, or use --method rq-vae, rqp-vae, drq-vae or drq-vae-cl")
    x = _embeddings_from(embeddings, data)
    if codebook_size is None:
        codebook_size = default_codebook_size(len(x))
    tokenizer = make_tokenizer(method, levels=levels, codebook_size=codebook_size, seed=seed, **options, **neural)
    fit_options = {"pairs": _train_pairs(method, data)} if method.strip().lower().endswith("-cl") else {}
    parallel = init_from_env()  # under torchrun: join the job first, so "cuda" means this rank's GPU
    started = time.perf_counter()
    tokenizer.fit(x, device=device, **fit_options)
    seconds = time.perf_counter() - started
    if parallel.is_main:  # every rank holds the same model; rank 0 saves it
        tokenizer.save(out)
        console.print(f"fitted {method} ({levels} x {codebook_size}) on {len(x):,} x {x.shape[1]} embeddings "
                      f"in {seconds:.1f} s; saved to {out}")
    # Leave the process group on success only: after a failure the other ranks may never reach the barrier.
    shutdown()


@app.command("encode")
def encode(
    model: ModelDir,
    out: Annotated[Path, typer.Option("--out", help="codes.npy ((N, L) int64) or codes.parquet (item_id "
                                      "when --data is given, level columns, sid string).")],
    embeddings: EmbeddingsFile = None,
    data: OptionalData = None,
    chunk_rows: ChunkRows = 65_536,
    device: Device = "cpu",
    backend: Backend = "local",
    address: RayAddress = None,
    actors: RayActors = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="With --backend ray (--out is a directory): "
                                            "write into a non-empty one.")] = False,
    progress: ProgressFlag = None,
    threads: Threads = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", hidden=True)] = None,
) -> None:
    """Encode embeddings into Semantic IDs with a fitted tokenizer.

    The input is read and the codes written chunk by chunk (bounded memory, any size); --embeddings
    may also be a directory of parquet files. With `--backend ray`, --out is a directory of parquet files.

    Example: `sidkit encode --model models/rqk --data data/ml-100k --out codes.parquet`

    On Ray: `sidkit encode --model models/rqk --embeddings emb/ --out codes/ --backend ray --address auto`
    """
    if batch_size is not None:
        raise SidkitError("--batch-size of `sidkit encode` is now --chunk-rows (rows read and encoded at a time, "
                          "as in `sidkit assign`)", where="--batch-size", fix=f"write --chunk-rows {batch_size}")
    use_progress(progress)
    use_threads(threads)
    encode_command(model, out, embeddings, data, chunk_rows=chunk_rows, device=device, backend=backend,
                   address=address, actors=actors, overwrite=overwrite)


@app.command("diagnose")
def diagnose(
    model: ModelDir,
    embeddings: EmbeddingsFile = None,
    data: OptionalData = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the metrics as JSON.",
                                                  callback=file_output)] = None,
    rho: Annotated[str, typer.Option(help="Comma-separated relative noise levels of the overlap (O_pi, K_eff, "
                                     "penalties, flip rate).")] = "0.1",
    samples: Annotated[int, typer.Option(help="Noise draws per item for the overlap (>= 3).")] = 8,
    overlap: Annotated[bool, typer.Option("--overlap/--no-overlap", help="Compute the overlap (one more pass "
                                          "that encodes every item `samples` times per rho).")] = True,
    seed: Annotated[int, typer.Option(help="Seed of the noise draws.")] = 0,
    device: Device = "cpu",
    backend: Backend = "local",
    address: RayAddress = None,
    progress: ProgressFlag = None,
    threads: Threads = None,
) -> None:
    """Code usage per level, SID collisions, reconstruction, and the expected codeword overlap O_pi with
    K_eff, its penalties and the flip rate per level and depth, of a fitted tokenizer (streamed, any size).

    Example: `sidkit diagnose --model models/rqk --data data/ml-100k --json diagnostics.json`
    """
    from sidkit.cli.compare import parse_floats

    use_progress(progress)

    use_threads(threads)
    rhos = parse_floats(rho, "--rho")
    result = diagnose_result(model, embeddings, data, device=device, backend=backend, address=address)
    levels = Table(title=f"code usage ({result.usage.num_items:,} items)")
    for column in ("level", "size", "active", "dead", "perplexity", "entropy ratio", "gini"):
        levels.add_column(column, justify="right")
    for lv in result.usage.levels:
        levels.add_row(str(lv.level), str(lv.size), str(lv.active), str(lv.dead), f"{lv.perplexity:.1f}",
                       f"{lv.entropy_ratio:.3f}", f"{lv.gini:.3f}")
    console.print(levels)
    sid, rec = result.usage.sid, result.reconstruction
    summary = Table(show_header=False, title="full SID and reconstruction")
    summary.add_row("unique ratio", f"{sid.unique_ratio:.4f}")
    summary.add_row("collision rate", f"{sid.collision_rate:.4f}")
    summary.add_row("largest bucket", str(sid.max_bucket))
    summary.add_row("reconstruction MSE", f"{rec.mse:.4f}")
    summary.add_row("relative error", f"{rec.relative_error:.4f}")
    summary.add_row("mean cosine", f"{rec.cosine:.4f}")
    console.print(summary)
    sweep = overlap_result(model, embeddings, data, rhos, samples, seed=seed, device=device) if overlap else None
    if sweep is not None:
        for report in sweep.reports:
            console.print(overlap_table(report))
    if json_out is not None:
        from sidkit.io import write_json

        payload = {"model": str(model), **result.to_dict()}
        if sweep is not None:
            payload["overlap"] = sweep.to_dict()
        write_json(json_out, payload)
        console.print(f"metrics written to {json_out}")


def overlap_result(model: Path, embeddings: Path | None, data: Path | None, rhos: tuple[float, ...], samples: int,
                   *, seed: int, device: str) -> OverlapSweep:
    """The overlap sweep of a saved tokenizer over the streamed embeddings (always local)."""
    from sidkit.cli.scale import embeddings_path
    from sidkit.stream.overlap import stream_overlap_sweep
    from sidkit.stream.source import open_embeddings
    from sidkit.tokenizers.base import load_tokenizer

    path = embeddings_path(embeddings, data)
    tokenizer = load_tokenizer(model, device=device)
    return stream_overlap_sweep(tokenizer, open_embeddings(path if data is None else path / "embeddings.npy"),
                                rhos, samples, seed=seed)


def overlap_table(report: OverlapReport) -> Table:
    """O_pi, K_eff, DP, GP and flip rate per level and depth, each Monte Carlo figure with its 95% interval."""
    table = Table(title=f"expected codeword overlap at rho = {report.rho:g} ({report.samples} noise draws per "
                  "item; ± = 95% interval over draws)")
    for column in ("symbols", "K_nom", "1/sum pi^2", "O_pi", "K_eff ↑", "DP", "GP", "DP x ↓", "GP x ↓", "flip ↓"):
        table.add_column(column, justify="right")
    for entry in (*report.levels, *report.depths):
        st, z = entry.stats, 1.96
        table.add_row(f"{entry.by} {entry.index}", f"{st.nominal_size:,}", f"{1 / st.simpson:.1f}",
                      f"{st.overlap:.4g} ± {z * st.overlap_se:.2g}",
                      f"{st.effective_size:.1f} ± {z * st.effective_size_se:.1f}", f"{st.distribution_penalty:.3g}",
                      f"{st.geometry_penalty:.3g} ± {z * st.geometry_penalty_se:.2g}",
                      f"{st.distribution_factor:.2f}", f"{st.geometry_factor:.2f} ± {z * st.geometry_factor_se:.2f}",
                      f"{entry.flip_rate:.3f} ± {z * (entry.flip_rate_se or 0.0):.3f}")
    return table


def _train_pairs(method: str, data: Path | None) -> np.ndarray:
    """The training split of the behaviour pairs of dataset ``data``, (P, 2) catalog rows."""
    from sidkit.data.dataset import load_dataset
    from sidkit.data.pairs import behaviour_pairs

    if data is None:
        raise SidkitError(f"{method} trains on behaviour pairs from the interactions of a dataset directory",
                          where="--data", fix="pass --data DIR (a dataset directory with interactions.parquet)")
    dataset = load_dataset(data, embeddings=False)
    return behaviour_pairs(dataset.interactions, dataset.catalog).train


def _embeddings_from(embeddings: Path | None, data: Path | None) -> np.ndarray:
    from sidkit.data.dataset import EMBEDDINGS_FILE
    from sidkit.data.files import read_embeddings

    if (embeddings is None) == (data is None):
        raise SidkitError("give exactly one of --embeddings and --data", where="options",
                          fix="pass --embeddings X.npy, or --data DIR holding embeddings.npy")
    path = embeddings if embeddings is not None else data / EMBEDDINGS_FILE  # type: ignore[operator]
    if data is not None and not path.is_file():
        raise SidkitError(f"{path} does not exist", where="--data",
                          fix=f"run `sidkit embed --data {data}` first")
    return read_embeddings(path)
