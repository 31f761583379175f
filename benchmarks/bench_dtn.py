"""Training throughput of DTN relative to MMoE (and PLE, Shared-Bottom), with parameter counts.

Run: .venv/bin/python benchmarks/bench_dtn.py                       (default sizes)
     .venv/bin/python benchmarks/bench_dtn.py --steps 10 --repeats 2   (quick)
     .venv/bin/python benchmarks/bench_dtn.py --write-docs            (append the table to docs/benchmarks.md)

Every model gets the same synthetic impressions (user fields, a candidate of T tokens, a history of
H items) and the same ModelConfig (embedding 32, dropout 0.1: sidkit's defaults, as `sidkit rank`
uses them); DTN adds its own DTNConfig defaults (module width 128, towers 128-64). The measure is
impressions per second of training steps (forward, backward, fused Adam) over identical batches,
models alternating, best of ``--repeats`` (other jobs on a shared machine only ever slow a run
down). The ratio DTN / MMoE is the number to read; absolute rates depend on the machine's load.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sidkit.features.types import ItemRepresentation
from sidkit.ranking.models import ModelConfig, MultiTaskRanker, build_model

DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
MODELS = ("mmoe", "dtn", "ple", "shared-bottom")


def make_inputs(rows: int, items: int, tokens: int, table: int, history: int, users: int, fields: int,
                seed: int = 0) -> tuple[ItemRepresentation, list[torch.Tensor], torch.Tensor]:
    rng = np.random.default_rng(seed)
    token_rows = rng.integers(1, table, (items + 1, tokens))
    token_rows[-1] = 0
    rep = ItemRepresentation("bench", token_rows, table)
    hist = rng.integers(0, items, (rows, history))
    lengths = rng.integers(0, history + 1, rows)
    hist[np.arange(history)[None, :] >= lengths[:, None]] = items
    inputs = [torch.from_numpy(rng.integers(0, items, rows)),
              torch.from_numpy(rng.integers(1, users, (rows, fields))), torch.from_numpy(hist)]
    click = rng.random(rows) < 0.3
    labels = torch.from_numpy(np.stack([click, click & (rng.random(rows) < 0.4)], axis=1).astype(np.float32))
    return rep, inputs, labels


def rates(models: dict[str, MultiTaskRanker], inputs: list[torch.Tensor], labels: torch.Tensor, batch: int,
          steps: int, repeats: int) -> dict[str, float]:
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    batches = [order[s:s + batch] for s in range(0, len(labels) - batch + 1, batch)]
    if len(batches) < steps + 2:
        raise SystemExit(f"{len(labels)} rows give {len(batches)} batches of {batch}; need {steps + 2}: raise --rows")
    optimizers = {name: torch.optim.Adam(m.parameters(), lr=1e-3, fused=True) for name, m in models.items()}
    seen: dict[str, list[float]] = {name: [] for name in models}
    for repeat in range(repeats + 1):  # repeat 0 warms up
        for name, model in models.items():
            model.train()
            chosen = batches[:2] if repeat == 0 else batches[2:steps + 2]
            start = time.perf_counter()
            for index in chosen:
                logits = model(*(t[index] for t in inputs))
                loss = F.binary_cross_entropy_with_logits(logits, labels[index])
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[name].step()
            if repeat:
                seen[name].append(len(chosen) * batch / (time.perf_counter() - start))
    return {name: max(values) for name, values in seen.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    items, tokens, table, history, users, fields = 5000, 4, 8193, 20, 2000, 4
    rep, inputs, labels = make_inputs(args.rows, items, tokens, table, history, users, fields)
    config = ModelConfig(embedding_dim=32)
    models = {name: build_model(name, rep, users, ("click", "like"), config) for name in MODELS}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    block = models["mmoe"].features
    embedding = block.items.embedding.weight.numel() + block.users.embedding.weight.numel()
    measured = rates(models, inputs, labels, args.batch, args.steps, args.repeats)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"Batch {args.batch}, {args.steps} steps x best of {args.repeats}, {args.threads} thread(s), "
             f"load average {load:.1f} on {os.cpu_count()} cores; embedding tables {embedding:,} parameters "
             "(in every count below).", "",
             "| model | parameters | parameters without embeddings | impressions/s | relative to MMoE |",
             "|---|---|---|---|---|"]
    for name in MODELS:
        lines.append(f"| {name} | {params[name]:,} | {params[name] - embedding:,} | {measured[name]:,.0f} | "
                     f"{measured[name] / measured['mmoe']:.2f}x |")
    text = "\n".join(lines)
    print(text)
    if args.write_docs:
        with DOCS.open("a") as handle:
            handle.write("\n## DTN training throughput relative to MMoE (`benchmarks/bench_dtn.py`)\n\n"
                         + text + "\n")


if __name__ == "__main__":
    main()
