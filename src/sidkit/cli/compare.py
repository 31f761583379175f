"""`sidkit compare`: fit several tokenizers on one dataset, diagnose them all, write metrics and a report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from sidkit.cli.app import DataDir, Device, OutDir, Overwrite, ProgressFlag, app, check_out_dir, console, use_progress
from sidkit.errors import SidkitError

if TYPE_CHECKING:
    from sidkit.compare import ComparisonResult


@app.command("compare")
def compare(
    data: DataDir,
    out: OutDir,
    methods: Annotated[str, typer.Option(help="Comma-separated tokenizer methods.")] = (
        "rq-kmeans,rq-vae,rqp-vae,drq-vae,drq-vae-cl"),
    levels: Annotated[int, typer.Option(help="Code levels L.")] = 3,
    codebook_size: Annotated[int | None, typer.Option(help="Codes per level K (default: 256, fewer for "
                                                      "small catalogs).")] = None,
    rho: Annotated[str, typer.Option(help="Comma-separated relative noise levels of the overlap sweep.")] = (
        "0.02,0.05,0.1,0.2,0.5"),
    reference_rho: Annotated[float, typer.Option(help="Noise level of the summary table.")] = 0.1,
    samples: Annotated[int, typer.Option(help="Noise draws per item for the empirical overlap.")] = 8,
    epochs: Annotated[int | None, typer.Option(help="Training epochs of the neural tokenizers "
                                               "(default: theirs).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of every fit and draw; stability refits with seed + 1.")] = 0,
    stability: Annotated[bool, typer.Option("--stability/--no-stability",
                                            help="Refit each method with another seed and compare.")] = True,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write report.html.")] = True,
    device: Device = "cpu",
    overwrite: Overwrite = False,
    progress: ProgressFlag = None,
) -> None:
    """Fit tokenizers, compute every diagnostic, write metrics.json, summary.md and report.html.

    Example: `sidkit compare --data data/ml-100k --methods rq-kmeans,rq-vae,rqp-vae,drq-vae,drq-vae-cl --out runs/cmp`
    """
    from sidkit.compare import CompareSettings, run_comparison

    use_progress(progress)
    check_out_dir(out, overwrite)
    settings = CompareSettings(levels=levels, codebook_size=codebook_size, rhos=_floats(rho, "--rho"),
                               reference_rho=reference_rho, samples=samples, epochs=epochs, seed=seed,
                               stability=stability, device=device)
    result = run_comparison(data, methods.split(","), out, settings, report=report,
                            log=lambda line: console.print(f"[dim]{line}[/]", highlight=False))
    print_summary(result, report=report)


def print_summary(result: ComparisonResult, *, report: bool = True) -> None:
    """The summary table of ``result``, and where its files are."""
    from sidkit.compare import summary_table

    console.print(summary_table(result))
    console.print(f"metrics: {result.metrics_path}\nsummary: {result.summary_path}")
    if report:
        console.print(f"report:  {result.report_path}")


def _floats(text: str, where: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SidkitError(f"cannot read {text!r} as comma-separated numbers", where=where,
                          fix="write e.g. 0.02,0.05,0.1") from None
