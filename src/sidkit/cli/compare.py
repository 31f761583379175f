"""`sidkit compare`: fit several tokenizers on one dataset, diagnose them all, write metrics and a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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

if TYPE_CHECKING:
    from sidkit.compare import ComparisonResult


@app.command("compare")
def compare(
    data: DataDir,
    out: OutDir,
    methods: Annotated[str | None, typer.Option(help="Comma-separated tokenizer methods, each optionally with "
                                                "settings: rq-vae@epochs=50@latent_dim=16 (default: all five, "
                                                "or none when --model is given).")] = None,
    model: Annotated[list[str] | None, typer.Option("--model", help="A tokenizer fitted elsewhere, LABEL=DIR or "
                                                    "DIR (labelled by its directory name); repeatable.")] = None,
    levels: Annotated[int, typer.Option(help="Code levels L.")] = 3,
    codebook_size: Annotated[int | None, typer.Option(help="Codes per level K (default: 256, fewer for "
                                                      "small catalogs).")] = None,
    rho: Annotated[str, typer.Option(help="Comma-separated relative noise levels of the overlap sweep.")] = (
        "0.02,0.05,0.1,0.2,0.5"),
    reference_rho: Annotated[float, typer.Option(help="Noise level of the summary table.")] = 0.1,
    samples: Annotated[int, typer.Option(help="Noise draws per item for the empirical overlap (>= 3).")] = 8,
    epochs: Annotated[int, typer.Option(help="Most training epochs of the neural tokenizers; early stopping on "
                                        "the validation loss usually ends training first.")] = 300,
    patience: Annotated[int, typer.Option(help="Epochs without a better validation loss before a neural "
                                          "tokenizer stops.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of every fit and draw; stability refits with seed + 1.")] = 0,
    stability: Annotated[bool, typer.Option("--stability/--no-stability",
                                            help="Refit each method with another seed and compare.")] = True,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    device: Device = "cpu",
    overwrite: Overwrite = False,
    progress: ProgressFlag = None,
    threads: Threads = None,
) -> None:
    """Fit tokenizers (or take fitted ones), compute every diagnostic, write metrics.json, summary.md and
    report.html.

    Example: `sidkit compare --data data/ml-100k --out runs/cmp` (all five methods, trained to convergence)

    Two settings of one method beside a fitted model:
    `sidkit compare --data data/ml-100k --methods rq-vae@epochs=20,rq-vae --model mine=models/rqk --out runs/cmp2`
    """
    from sidkit.compare import DEFAULT_METHODS, CompareSettings, run_comparison, split_methods

    use_progress(progress)

    use_threads(threads)
    check_out_dir(out, overwrite)
    fitted = dict(_fitted_model(entry) for entry in (model or []))
    chosen = split_methods(methods) if methods is not None else ([] if fitted else list(DEFAULT_METHODS))
    settings = CompareSettings(levels=levels, codebook_size=codebook_size, rhos=parse_floats(rho, "--rho"),
                               reference_rho=reference_rho, samples=samples, epochs=epochs, patience=patience,
                               seed=seed, stability=stability, device=device)
    result = run_comparison(data, chosen, out, settings, fitted=fitted, report=report,
                            log=lambda line: console.print(f"[dim]{line}[/]", highlight=False))
    print_summary(result, report=report)


def print_summary(result: ComparisonResult, *, report: bool = True) -> None:
    """The summary table of ``result``, its notes, and where its files are."""
    from sidkit.report.summary import notes, summary_table

    console.print(summary_table(result))
    for line in notes(result):
        console.print(f"note: {line}", highlight=False)
    console.print(f"metrics: {result.metrics_path}\nsummary: {result.summary_path}")
    if report:
        console.print(f"report:  {result.report_path}")


def _fitted_model(entry: str) -> tuple[str, Path]:
    label, sep, directory = entry.partition("=")
    path = Path(directory if sep else label)
    name = label.strip() if sep else path.name
    if not name or not path.is_dir():
        raise SidkitError(f"--model {entry!r} names no tokenizer directory", where="--model",
                          fix="pass LABEL=DIR or DIR, a directory written by `sidkit fit`")
    return name, path


def parse_floats(text: str, where: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SidkitError(f"cannot read {text!r} as comma-separated numbers", where=where,
                          fix="write e.g. 0.02,0.05,0.1") from None
