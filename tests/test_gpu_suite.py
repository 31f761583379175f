"""benchmarks/gpu_suite.sh: the CUDA suite runs end to end at toy sizes on the CPU (``--tiny``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.sh"


def run_suite(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=timeout,
                          check=False)


@pytest.mark.slow
def test_tiny_suite_runs_every_section_on_the_cpu() -> None:
    # About 20 s of CPU; the bound covers a machine shared with other jobs.
    result = run_suite("--tiny", "--threads", "1", timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "device cpu" in out and "(--tiny)" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "---" not in line]
    names = ("RQ-KMeans fit, 4,096", "RQ-KMeans fit, 8,192", "RQ-KMeans encode, 8,192", "RQ-VAE epoch",
             "DRQ-VAE epoch", "O_pi (levels and depths, 8 draws), 4,096", "TIGER training", "TIGER beam search")
    for name in names:
        assert any(name in row for row in rows), f"no row for {name!r} in:\n{out}"
    # k-means rows compare with a baseline (torch on the CPU) and print a ratio.
    fit_rows = [row for row in rows if row.startswith("| RQ-KMeans")]
    assert len(fit_rows) == 4 and all("torch cdist/matmul" in row and "x** |" in row for row in fit_rows)


def test_full_suite_without_cuda_says_so() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: the full suite would run")
    result = run_suite("--sections", "kmeans", timeout=300)
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and "Traceback" not in result.stderr
