"""bfloat16 against float32 training, paired by seed: what the default precision costs in quality.

Reads two ``--json`` outputs of ``benchmarks/compare_tokenizers.py``, one per precision, over the same
seeds, and prints per neural method the mean of each metric under both and the paired difference
(bfloat16 - float32) with its 95% t-interval, and the ratio of CPU seconds per trained epoch.

    .venv/bin/python benchmarks/compare_tokenizers.py --dataset ml-100k --seeds 0 1 2 3 4 5 6 7 8 9 10 \\
        --threads 1 --precision bfloat16 --json bf16.json
    .venv/bin/python benchmarks/compare_tokenizers.py --dataset ml-100k --seeds 0 1 2 3 4 5 6 7 8 9 10 \\
        --threads 1 --precision float32 --json f32.json
    .venv/bin/python benchmarks/compare_precision.py bf16.json f32.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any

from scipy import stats

METRICS = (("mse", "recon MSE", 4), ("auc", "SID-emb AUC", 4), ("ppl0", "L0 perplexity", 1))


def _rows(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    rows = json.loads(path.read_text())
    return {(row["method"], row["seed"]): {**row, "ppl0": row["perplexity"][0]} for row in rows}


def paired_cell(low: list[float], full: list[float], digits: int) -> str:
    """'mean low / mean full, diff +d [lo, hi]' with a 95% t-interval of the paired difference."""
    diff = [a - b for a, b in zip(low, full, strict=True)]
    mean = statistics.mean(diff)
    text = f"{statistics.mean(low):.{digits}f} / {statistics.mean(full):.{digits}f}, {mean:+.{digits}f}"
    if len(diff) > 1:
        half = stats.t.ppf(0.975, len(diff) - 1) * statistics.stdev(diff) / math.sqrt(len(diff))
        text += f" [{mean - half:+.{digits}f}, {mean + half:+.{digits}f}]"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bfloat16", type=Path, help="compare_tokenizers.py --json output, --precision bfloat16")
    parser.add_argument("float32", type=Path, help="the same with --precision float32")
    args = parser.parse_args(argv)
    low, full = _rows(args.bfloat16), _rows(args.float32)
    methods = [m for m in dict.fromkeys(method for method, _ in low) if any(r["epochs"] for k, r in low.items()
                                                                         if k[0] == m)]
    print("| method | seeds | " + " | ".join(f"{title}: bf16 / f32, diff [95%]" for _, title, _ in METRICS)
          + " | CPU s per epoch, bf16 / f32 |")
    print("|---|---|" + "---|" * len(METRICS) + "---|")
    for method in methods:
        seeds = sorted(seed for m, seed in low if m == method and (m, seed) in full)
        if not seeds:
            continue
        cells = [paired_cell([low[(method, s)][key] for s in seeds], [full[(method, s)][key] for s in seeds], digits)
                 for key, _, digits in METRICS]
        per_epoch = [sum(rows[(method, s)]["cpu_seconds"] for s in seeds) / sum(rows[(method, s)]["epochs"]
                                                                              for s in seeds) for rows in (low, full)]
        print(f"| {method} | {len(seeds)} | " + " | ".join(cells) + f" | {per_epoch[0] / per_epoch[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
