"""Where a `sidkit rank` run spends its CPU, before and after the speed changes, in one process.

Three measurements on one dataset (e.g. MovieLens-1M), each interleaved before/after so that machine
load hits both alike; CPU time is printed beside wall time, with the load average:

1. histories: the H most recent training clicks before every training impression (one gather per history
   slot before; block gathers of all slots after). Outputs are checked equal.
2. training steps of MMoE on real training batches: dropout masks from ``Generator.bytes`` before,
   raw 64-bit draws after (same mask distribution).
3. test passes per run: before, the test split was scored after every epoch that set a best
   validation score (and once more at the end); after, once per distinct selected epoch. Counted
   from ``runs.jsonl`` of an earlier run (``--runs``), with the CPU time of one test pass.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_rank_speed.py --data DIR --tokenizer TOK \\
        --runs OLD_RUN/runs.jsonl --steps 40
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from sidkit.data.dataset import load_dataset
from sidkit.features.representations import build_representation
from sidkit.ranking import layers
from sidkit.ranking.data import _Timeline, build_ranking_data, training_item_counts
from sidkit.ranking.experiment import load_sids
from sidkit.ranking.metrics import evaluate
from sidkit.ranking.models import ModelConfig, build_model
from sidkit.ranking.training import predict
from sidkit.threads import set_threads


def histories_before(timeline: _Timeline, user: np.ndarray, time_: np.ndarray, *, length: int,
                     pad: int) -> np.ndarray:
    """The per-slot loop that ``_Timeline.histories`` replaced (same result)."""
    out = np.full((len(user), length), pad, dtype=np.int64)
    offset = np.clip(time_ - timeline.t0 + 1, 0, timeline.span - 1)
    key = user * timeline.span + offset
    order = np.argsort(key)
    end = np.empty(len(key), dtype=np.int64)
    end[order] = np.searchsorted(timeline.keys, key[order], side="left")
    start = np.searchsorted(timeline.keys, user[order] * timeline.span, side="left")
    available = np.empty(len(key), dtype=np.int64)
    available[order] = end[order] - start
    for k in range(length):
        has = available > k
        out[has, k] = timeline.items[end[has] - 1 - k]
    return out


def dropout_before(self: layers.FastDropout, x: torch.Tensor) -> torch.Tensor:
    """FastDropout.forward with its former mask source, ``Generator.bytes``."""
    if not self.training or self.p == 0.0:
        return x
    rng = getattr(self, "_before_rng", None)
    if rng is None:
        rng = self._before_rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
    bits = np.frombuffer(rng.bytes(2 * x.numel()), dtype=np.int16)
    mask = (bits >= self._threshold).astype(np.float32)
    mask *= 1.0 / (1.0 - self.p)
    return x * torch.from_numpy(mask).view(x.shape).to(x.dtype)


def clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def since(start: tuple[float, float]) -> tuple[float, float]:
    return time.process_time() - start[0], time.perf_counter() - start[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--feature", default="hash")
    parser.add_argument("--runs", help="runs.jsonl of an earlier run, to count its test passes")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    set_threads(1)
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))

    dataset = load_dataset(args.data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        start = clock()
        data = build_ranking_data(dataset, seed=0, history=20, negatives=2,
                                  user_features=("age", "gender", "occupation"))
        cpu, wall = since(start)
    print(f"build_ranking_data (after): cpu {cpu:.1f} s, wall {wall:.1f} s; train {len(data.train):,} impressions")

    # 1. histories of the training impressions
    clicked = data.train.labels["click"] > 0  # the training engagements, as a timeline to read from
    timeline = _Timeline.build(data.train.user[clicked], data.train.time[clicked], data.train.item[clicked])
    user, when = data.train.user, data.train.time
    pad = data.num_items
    got: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    for _ in range(args.repeats):
        for name in got:
            start = clock()
            if name == "before":
                before = histories_before(timeline, user, when, length=20, pad=pad)
            else:
                after = timeline.histories(user, when, length=20, pad=pad)
            got[name].append(since(start))
    assert np.array_equal(before, after), "histories differ"
    report("histories of the training split", got)

    # 2. training steps
    counts = training_item_counts(data)
    sids = load_sids(args.tokenizer, np.ascontiguousarray(dataset.catalog.embeddings, dtype=np.float32),
                     dataset.catalog.item_ids)
    rep = build_representation(args.feature, item_ids=dataset.catalog.item_ids, sids=sids,
                               embeddings=dataset.catalog.embeddings, budget=4096, train_items=counts, seed=0)
    model = build_model("mmoe", rep, data.num_user_embeddings, data.tasks, ModelConfig(seed=0),
                        num_user_fields=int(data.train.user_features.shape[1]))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, fused=True)
    train = data.train
    item = torch.from_numpy(train.item)
    features = torch.from_numpy(np.ascontiguousarray(train.user_features))
    history = torch.from_numpy(np.ascontiguousarray(train.history))
    labels = torch.from_numpy(np.stack([train.labels[t] for t in data.tasks], axis=1).astype(np.float32))
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    after_forward = layers.FastDropout.forward
    model.train()
    got = {"before": [], "after": []}
    step = 0
    for _ in range(args.repeats):
        for name in got:
            layers.FastDropout.forward = dropout_before if name == "before" else after_forward  # type: ignore[method-assign]
            start = clock()
            for _ in range(args.steps):
                index = order[(step % (len(train) // 2048)) * 2048:][:2048]
                step += 1
                logits = model(item[index], features[index], history[index])
                loss = F.binary_cross_entropy_with_logits(logits, labels[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            cpu, wall = since(start)
            got[name].append((cpu / args.steps, wall / args.steps))
    layers.FastDropout.forward = after_forward  # type: ignore[method-assign]
    report(f"one MMoE training step ({args.feature}, batch 2048)", got, unit="ms", scale=1e3)
    steps_per_epoch = -(-len(train) // 2048)
    for name, rows in got.items():
        print(f"  {name}: {steps_per_epoch} steps per epoch -> {np.median([r[0] for r in rows]) * steps_per_epoch:.0f} "
              "s CPU per training epoch")

    # 3. test passes
    model.eval()
    start = clock()
    evaluate(data.test, predict(model, data.test), data.conditional)
    cpu, wall = since(start)
    print(f"one test pass ({len(data.test):,} impressions): cpu {cpu:.1f} s, wall {wall:.1f} s")
    if args.runs:
        for line in Path(args.runs).read_text().splitlines():
            record = json.loads(line)
            scores = record["valid_scores"]
            improved = sum(1 for i, s in enumerate(scores) if s > max(scores[:i], default=-np.inf))
            selected = {entry["best_epoch"] for entry in record.get("by_selection", {}).values()}
            print(f"  {record['feature']} seed {record['seed']}: {len(scores)} epochs; test passes before "
                  f">= {improved + 1} (every epoch with a best 'all' score, and the end), after "
                  f"{max(len(selected), 1)}")
    print("load average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


def report(what: str, got: dict[str, list[tuple[float, float]]], unit: str = "s", scale: float = 1.0) -> None:
    med = {name: (np.median([r[0] for r in rows]) * scale, np.median([r[1] for r in rows]) * scale)
           for name, rows in got.items()}
    print(f"{what}: " + "; ".join(f"{name} cpu {cpu:.2f} {unit} wall {wall:.2f} {unit}" for name, (cpu, wall)
                                  in med.items())
          + f"; before/after cpu ratio {med['before'][0] / med['after'][0]:.2f}")


if __name__ == "__main__":
    main()
