"""SASRec training steps on a real dataset: the current step against the two-op form it replaced.

Measured interleaved in one process (so machine load hits both alike), per precision:

- ``two-op``: the loss as ``cross_entropy(states @ items.T)`` (two torch ops, logits materialized)
  and ``nn.Dropout`` (torch's bernoulli_ masks): the step before the fused loss;
- ``fused``: the model as it is (:func:`sidkit.retrieval.softmax.full_softmax_cross_entropy`,
  :class:`sidkit.ranking.layers.FastDropout`).

For each: CPU ms per optimizer step, next-item targets per CPU second, the CPU seconds of one epoch
(every training target once), the arithmetic per target counted from the layer shapes (full
softmax over the catalogue: 3 products of 2 N W flops, forward and two gradients; each block's
QKV, output, attention and feed-forward products, forward and backward, per position, scaled by
positions per target) and the FLOP/s it reaches against a (8192 x W) @ (W x N') GEMM measured in
the same run (N' = N rounded up to a multiple of 16, the fused loss's table; N itself is printed too).

Example::

    python benchmarks/bench_sasrec_step.py --data data/ml-1m --threads 1 --steps 40 --rounds 2
    python benchmarks/bench_sasrec_step.py --data data/ml-1m --threads 1 --steps 40 --profile two-op
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sidkit.data.dataset import load_dataset
from sidkit.ranking.layers import FastDropout
from sidkit.retrieval.data import build_next_item_data, sequence_windows
from sidkit.retrieval.sasrec import SasrecConfig, SasrecModel
from sidkit.retrieval.training import resolve_precision

VARIANTS = ("two-op", "fused")
PRECISIONS = ("float32", "bfloat16")


def two_op_model(model: SasrecModel) -> SasrecModel:
    """``model`` with torch dropout and the loss written as two torch ops (the step before fusing)."""
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, FastDropout):
                setattr(parent, name, nn.Dropout(child.p))

    def loss(windows: torch.Tensor, label_start: torch.Tensor) -> torch.Tensor:
        inputs, labels = windows[:, :-1], windows[:, 1:]
        keep = (labels != model.num_items) & (torch.arange(labels.shape[1])[None, :] >= label_start[:, None])
        return F.cross_entropy(model.scores(model.states(inputs)[keep]).float(), labels[keep])

    model.loss = loss  # type: ignore[method-assign]
    return model


def flops_per_target(config: SasrecConfig, items: int, history: int, positions_per_target: float) -> dict[str, float]:
    """Forward + backward flops (3x the forward's multiply-adds x 2) per trained target."""
    w, f, t = config.width, config.hidden, history
    softmax = 3 * 2 * items * w
    per_position = config.layers * (2 * w * 3 * w + 2 * w * w + 2 * 2 * t * w + 2 * 2 * w * f)
    blocks = 3 * per_position * positions_per_target
    return {"softmax": float(softmax), "blocks": float(blocks), "total": float(softmax + blocks)}


def gemm_rate(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 1.0) -> float:
    """FLOP per CPU second of an (m x k) @ (k x n) product."""
    a, b = torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)
    a @ b
    count, cpu = 0, time.process_time()
    while time.process_time() - cpu < seconds:
        a @ b
        count += 1
    return 2.0 * m * k * n * count / max(time.process_time() - cpu, 1e-9)


def profile_steps(variant: str, data, config: SasrecConfig, windows: np.ndarray, label_start: np.ndarray,
                  steps: int) -> None:
    """Print the op table (self CPU time) of ``steps`` bfloat16 training steps of ``variant``."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = SasrecModel(data.num_items, data.history, config)
    model = two_op_model(model) if variant == "two-op" else model
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    batch = config.batch_size

    def step(i: int) -> None:
        rows = slice(i * batch, (i + 1) * batch)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model.loss(torch.from_numpy(windows[rows]), torch.from_numpy(label_start[rows]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step(0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(1, steps + 1):
            step(i)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset directory")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per variant, precision and round")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", choices=VARIANTS, default=None,
                        help="instead: the torch profiler's op table of --steps bfloat16 steps of this variant")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    data = build_next_item_data(load_dataset(args.data))
    config = SasrecConfig()
    rng = np.random.default_rng(0)
    _, windows, label_start = sequence_windows(data.train, length=data.history + 1, rng=rng)
    windows = np.where(windows < 0, data.num_items, windows)
    trained = (windows[:, 1:] != data.num_items) & (np.arange(data.history)[None] >= label_start[:, None])
    epoch_targets = int(trained.sum())
    print(f"{args.data}: {data.num_items:,} items, {len(windows):,} windows of {data.history + 1} "
          f"({epoch_targets:,} targets) per epoch, batch {config.batch_size}, threads {args.threads}; "
          f"load average {load_before[0]:.2f}")
    results: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    batch = config.batch_size
    if args.profile:
        profile_steps(args.profile, data, config, windows, label_start, args.steps)
        return
    for round_index in range(args.rounds + 1):  # round 0 warms up and is dropped
        for precision in PRECISIONS:
            dtype = resolve_precision(precision, torch.device("cpu"))
            for variant in VARIANTS:
                torch.manual_seed(0)
                model = SasrecModel(data.num_items, data.history, config)
                if variant == "two-op":
                    model = two_op_model(model)
                model.train()
                optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
                targets, cpu = 0, time.process_time()
                for step in range(args.steps):
                    rows = slice(step * batch, (step + 1) * batch)
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                        loss = model.loss(torch.from_numpy(windows[rows]), torch.from_numpy(label_start[rows]))
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    targets += int(trained[rows].sum())
                if round_index:
                    results.setdefault((variant, precision), []).append(
                        (time.process_time() - cpu, targets, args.steps))

    positions = float(len(windows) * data.history) / epoch_targets
    flops = flops_per_target(config, data.num_items, data.history, positions)
    padded = -(-data.num_items // 16) * 16  # the fused loss's table: a multiple of 16 rows
    rates = {p: gemm_rate(8192, config.width, padded, resolve_precision(p, torch.device("cpu"))) for p in PRECISIONS}
    unpadded = {p: gemm_rate(8192, config.width, data.num_items, resolve_precision(p, torch.device("cpu")))
                for p in PRECISIONS}
    print(f"\narithmetic per target: softmax {flops['softmax'] / 1e6:.2f} MFLOP (3 x 2 x {data.num_items} x "
          f"{config.width}), blocks {flops['blocks'] / 1e6:.2f} MFLOP ({positions:.2f} positions per target), total "
          f"{flops['total'] / 1e6:.2f} MFLOP")
    print("\n| variant | precision | CPU ms/step | targets per CPU s | epoch CPU s | GFLOP/s per CPU s | of GEMM |")
    print("|---|---|---|---|---|---|---|")
    for (variant, precision), runs in results.items():
        cpu = sum(r[0] for r in runs)
        targets = sum(r[1] for r in runs)
        steps = sum(r[2] for r in runs)
        per_cpu = targets / cpu
        achieved = per_cpu * flops["total"]
        print(f"| {variant} | {precision} | {cpu / steps * 1e3:.1f} | {per_cpu:,.0f} | {epoch_targets / per_cpu:.0f} | "
              f"{achieved / 1e9:.1f} | {achieved / rates[precision]:.0%} |")
    for precision in PRECISIONS:
        before = sum(r[0] for r in results[("two-op", precision)]) / sum(r[1] for r in results[("two-op", precision)])
        after = sum(r[0] for r in results[("fused", precision)]) / sum(r[1] for r in results[("fused", precision)])
        print(f"{precision}: fused / two-op CPU time per target {after / before:.2f} (speed-up {before / after:.2f}x); "
              f"GEMM (8192x{config.width})@({config.width}x{padded}) {rates[precision] / 1e9:.1f} GFLOP/s per CPU s "
              f"(x{data.num_items}: {unpadded[precision] / 1e9:.1f})")
    print(f"\nload average: {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after (1-minute)")


if __name__ == "__main__":
    main()
