"""Retrieval speed in one process: tiger and sasrec training throughput, and tiger's beam search.

Prints, for float32 and bfloat16 autocast measured interleaved (so machine load hits both alike):

- training: sequences (windows of H + 1 items) per second and next-item targets per second, for
  tiger (default size) and sasrec (default size), over ``--steps`` optimizer steps each;
- beam search at beam 20: test users per second, the model arithmetic it does per user (counted
  from the layer shapes: every GEMM and attention product of the encoder, the cross-attention keys
  and values, and each decoding step's beams), the FLOP/s that makes, and that as a share of the
  GEMM rate measured in the same run on a (8192 x W) @ (W x F) product of the model's own width W
  and feed-forward width F;
- training arithmetic: the FLOPs of one tiger training step (forward and backward, counted by
  torch's ``FlopCounterMode``: every matrix product and attention, elementwise work excluded), the
  FLOP/s the measured throughput makes and its share of the same GEMM rate, and what one epoch
  (``windows_per_user`` windows of every user) and a 26-epoch run take at the measured rate;
- the load average before and after, and CPU time beside wall time.

Example::

    python benchmarks/bench_retrieval.py --data data/ml-1m --tokenizer models/rqk --threads 1

Without ``--tokenizer`` it fits RQ-KMeans 3 x 128 (seed 0) on the dataset's embeddings first.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np
import torch

from sidkit.data.dataset import load_dataset
from sidkit.retrieval.data import build_next_item_data, sequence_windows
from sidkit.retrieval.sasrec import SasrecConfig, SasrecModel
from sidkit.retrieval.tiger import Tiger, TigerConfig, TigerModel, tiger_codes
from sidkit.retrieval.training import resolve_precision

PRECISIONS = ("float32", "bfloat16")


def beam_search_flops(config: TigerConfig, sizes: tuple[int, ...], history: int, beam: int) -> float:
    """Multiply-adds x 2 of one user's constrained beam search (no KV cache: each step re-reads its prefix)."""
    w, f, s = config.width, config.hidden, 1 + history
    encoder = config.encoder_layers * (2 * s * w * 3 * w + 2 * s * w * w + 4 * s * s * w + 4 * s * w * f)
    cross_memory = config.decoder_layers * 2 * s * w * 2 * w
    decoder = 0.0
    for depth, size in enumerate(sizes):
        groups, t = (1 if depth == 0 else beam), depth + 1
        per_layer = (2 * t * w * 3 * w + 2 * t * w * w + 4 * t * t * w  # self-attention
                     + 2 * t * w * w + 4 * t * s * w + 2 * t * w * w  # cross-attention (query, scores, output)
                     + 4 * t * w * f)  # feed-forward
        decoder += groups * (config.decoder_layers * per_layer + 2 * w * size)
    return float(encoder + cross_memory + decoder)


def gemm_rate(width: int, hidden: int, dtype: torch.dtype, device: torch.device,
              seconds: float = 1.0) -> tuple[float, float]:
    """FLOP/s of a (8192 x width) @ (width x hidden) product in ``dtype``: per wall second and per CPU
    second (on a shared machine the CPU figure is the one to compare with other CPU figures)."""
    a = torch.randn(8192, width, device=device).to(dtype)
    b = torch.randn(width, hidden, device=device).to(dtype)
    a @ b
    count, started, cpu = 0, time.perf_counter(), time.process_time()
    while time.process_time() - cpu < seconds:
        a @ b
        count += 1
    if device.type == "cuda":
        torch.cuda.synchronize()
    flops = 2.0 * 8192 * width * hidden * count
    return flops / (time.perf_counter() - started), flops / max(time.process_time() - cpu, 1e-9)


def tiger_step_flops(model: TigerModel, tiger: Tiger, windows: np.ndarray, label_start: np.ndarray,
                     history: int, batch: int, device: torch.device) -> float:
    """FLOPs of one float32 training step of ``batch`` windows, forward and backward (matrix products
    and attention as torch's FlopCounterMode counts them; the optimizer's elementwise update excluded)."""
    from torch.utils.flop_counter import FlopCounterMode

    win, start = windows[:batch], label_start[:batch]
    valid = (win[:, 1:] >= 0) & (np.arange(history)[None] >= start[:, None])
    users = torch.from_numpy(tiger._users[np.zeros(len(win), dtype=np.int64)]).to(device)
    counter = FlopCounterMode(display=False)
    with counter:
        loss = model.loss(users, tiger._tokens_of(win[:, :-1]), tiger._tokens_of(win[:, 1:]) - tiger._offsets,
                          torch.from_numpy(valid).to(device))
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def timed(fn: Callable[[], int]) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds, units done) of ``fn()``."""
    wall, cpu = time.perf_counter(), time.process_time()
    units = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, units


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="dataset directory with embeddings.npy")
    parser.add_argument("--tokenizer", default=None, help="tokenizer directory (default: fit RQ-KMeans 3 x 128)")
    parser.add_argument("--steps", type=int, default=30, help="training steps per model and precision")
    parser.add_argument("--users", type=int, default=512, help="test users decoded per precision")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds of every measurement (after "
                        "one warm-up round)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default=",".join(PRECISIONS),
                        help="comma-separated; on a CPU without native bfloat16 GEMMs bfloat16 is emulated and very "
                             "slow, so --precisions float32 measures only what --precision auto would use there")
    args = parser.parse_args()
    precisions = tuple(p.strip() for p in args.precisions.split(",") if p.strip())
    if not precisions or set(precisions) - set(PRECISIONS):
        parser.error(f"--precisions: give some of {', '.join(PRECISIONS)}, got {args.precisions!r}")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load_before = os.getloadavg()
    dataset = load_dataset(args.data)
    x = dataset.catalog.embeddings
    assert x is not None
    if args.tokenizer:
        from sidkit.tokenizers.base import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
    else:
        from sidkit.tokenizers.rq_kmeans import RQKMeans

        tokenizer = RQKMeans(levels=3, codebook_size=128, seed=0).fit(x)
    codes = tiger_codes(tokenizer.encode(x), dataset.catalog.item_ids)
    data = build_next_item_data(dataset)
    rng = np.random.default_rng(0)
    _, windows, label_start = sequence_windows(data.train, length=data.history + 1, rng=rng)
    print(f"{args.data}: {data.num_items:,} items, {len(data.train):,} users, SIDs {codes.sizes}, history "
          f"{data.history}, threads {args.threads}, device {device}; load average {load_before[0]:.2f}")

    tiger_config, sasrec_config = TigerConfig(), SasrecConfig()
    results: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    step_flops = 0.0
    for round_index in range(args.rounds + 1):  # round 0 warms up (imports, allocator, kernels) and is dropped
        for precision in precisions:
            dtype = resolve_precision(precision, device)
            tiger = Tiger(codes, TigerConfig(precision=precision), device=args.device, progress=False)
            tiger.model = TigerModel(codes.sizes, data.history, tiger_config).to(device)
            tiger._prepare(data)
            tiger._users = tiger._user_tokens(data.user_ids)
            model = tiger.model
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            batch = tiger_config.batch_size
            if not step_flops:
                step_flops = tiger_step_flops(model, tiger, windows, label_start, data.history, batch, device)

            def tiger_steps(model=model, tiger=tiger, optimizer=optimizer, dtype=dtype, batch=batch) -> int:
                model.train()
                targets = 0
                for step in range(args.steps):
                    rows = slice(step * batch, (step + 1) * batch)
                    win, start = windows[rows], label_start[rows]
                    valid = (win[:, 1:] >= 0) & (np.arange(data.history)[None] >= start[:, None])
                    users = torch.from_numpy(tiger._users[np.zeros(len(win), dtype=np.int64)]).to(device)
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                        loss = model.loss(users, tiger._tokens_of(win[:, :-1]),
                                          tiger._tokens_of(win[:, 1:]) - tiger._offsets,
                                          torch.from_numpy(valid).to(device))
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    targets += int(valid.sum())
                return targets

            keep = round_index > 0
            wall, cpu, targets = timed(tiger_steps)
            if keep:
                results.setdefault(("tiger train", precision), []).append((wall, cpu, targets))
            test = data.test.take(np.arange(min(args.users, len(data.test))))
            wall, cpu, users = timed(lambda tiger=tiger, test=test: len(tiger.recommend(test, 20)))
            if keep:
                results.setdefault(("tiger beam 20", precision), []).append((wall, cpu, users))

            smodel = SasrecModel(data.num_items, data.history, sasrec_config).to(device)
            soptimizer = torch.optim.AdamW(smodel.parameters(), lr=1e-3)
            sbatch = sasrec_config.batch_size

            def sasrec_steps(smodel=smodel, soptimizer=soptimizer, dtype=dtype, sbatch=sbatch) -> int:
                smodel.train()
                targets = 0
                for step in range(args.steps):
                    rows = slice(step * sbatch, (step + 1) * sbatch)
                    win = np.where(windows[rows] < 0, data.num_items, windows[rows])
                    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                        loss = smodel.loss(torch.from_numpy(win).to(device),
                                           torch.from_numpy(label_start[rows]).to(device))
                    soptimizer.zero_grad()
                    loss.backward()
                    soptimizer.step()
                    targets += int(((win[:, 1:] != data.num_items)
                                    & (np.arange(data.history)[None] >= label_start[rows][:, None])).sum())
                return targets

            wall, cpu, targets = timed(sasrec_steps)
            if keep:
                results.setdefault(("sasrec train", precision), []).append((wall, cpu, targets))

    print(f"\n{'what':<16} {'precision':<10} {'wall s':>8} {'CPU s':>8} {'seq/s (wall)':>13} {'targets/s':>10} "
          f"{'per CPU s':>10}")
    for (what, precision), runs in results.items():
        wall = sum(r[0] for r in runs)
        cpu = sum(r[1] for r in runs)
        units = sum(r[2] for r in runs)
        if what.endswith("train"):
            batch = tiger_config.batch_size if what.startswith("tiger") else sasrec_config.batch_size
            sequences = args.steps * batch * len(runs)
            print(f"{what:<16} {precision:<10} {wall:8.1f} {cpu:8.1f} {sequences / wall:13.0f} {units / wall:10.0f} "
                  f"{units / cpu:10.0f}")
        else:
            print(f"{what:<16} {precision:<10} {wall:8.1f} {cpu:8.1f} {units / wall:13.0f} {'users/s':>10} "
                  f"{units / cpu:10.0f}")
    for precision in precisions:
        tw = sum(r[0] for r in results[("tiger train", precision)])
        sw = sum(r[0] for r in results[("sasrec train", precision)])
        tiger_targets = sum(r[2] for r in results[("tiger train", precision)])
        sasrec_targets = sum(r[2] for r in results[("sasrec train", precision)])
        print(f"tiger / sasrec training time per target ({precision}): "
              f"{(tw / tiger_targets) / (sw / sasrec_targets):.2f}")

    flops = beam_search_flops(tiger_config, codes.sizes, data.history, 20)
    print(f"\nbeam search arithmetic: {flops / 1e6:.1f} MFLOP per user (width {tiger_config.width}, feed-forward "
          f"{tiger_config.hidden}, {tiger_config.encoder_layers}+{tiger_config.decoder_layers} layers, memory "
          f"{1 + data.history}, beam 20, depths {codes.sizes})")
    rates = {precision: gemm_rate(tiger_config.width, tiger_config.hidden, resolve_precision(precision, device), device)
             for precision in precisions}  # (wall, CPU) FLOP/s, for beam search and training alike
    for precision in precisions:
        wall_rate, cpu_rate = rates[precision]
        runs = results[("tiger beam 20", precision)]
        users_per_cpu = sum(r[2] for r in runs) / sum(r[1] for r in runs)
        users_per_wall = sum(r[2] for r in runs) / sum(r[0] for r in runs)
        achieved = users_per_cpu * flops
        print(f"{precision:<9} beam 20: {users_per_wall:.0f} users/s wall, {users_per_cpu:.0f} per CPU s = "
              f"{achieved / 1e9:.1f} GFLOP/s per CPU s; GEMM (8192x{tiger_config.width})@({tiger_config.width}x"
              f"{tiger_config.hidden}) {cpu_rate / 1e9:.1f} GFLOP/s per CPU s ({wall_rate / 1e9:.1f} per wall s): "
              f"beam search reaches {achieved / cpu_rate:.0%} of the GEMM rate")
    epoch_windows = len(sequence_windows(data.train, length=data.history + 1, rng=np.random.default_rng(0),
                                         per_user=tiger_config.windows_per_user)[1])
    per_window = step_flops / tiger_config.batch_size
    print(f"\ntiger training arithmetic: {per_window / 1e6:.1f} MFLOP per window of {data.history + 1} items, forward "
          f"and backward ({step_flops / 1e9:.2f} GFLOP per step of {tiger_config.batch_size}); an epoch is "
          f"{epoch_windows:,} windows ({tiger_config.windows_per_user} per user), "
          f"{epoch_windows * per_window / 1e12:.2f} TFLOP")
    for precision in precisions:
        cpu_rate = rates[precision][1]
        runs = results[("tiger train", precision)]
        sequences = args.steps * tiger_config.batch_size * len(runs)
        per_wall = sequences / sum(r[0] for r in runs)
        per_cpu = sequences / sum(r[1] for r in runs)
        epoch = epoch_windows / per_wall
        print(f"{precision:<9} training: {per_cpu * per_window / 1e9:.1f} GFLOP/s per CPU s "
              f"({per_wall * per_window / 1e9:.1f} per wall s), {per_cpu * per_window / cpu_rate:.0%} of the GEMM rate "
              f"({cpu_rate / 1e9:.1f} per CPU s); at {args.threads} thread(s) an epoch trains in {epoch:.0f} s of wall "
              f"time, 26 epochs in {26 * epoch / 60:.1f} min (validation and test not included)")
    load_after = os.getloadavg()
    print(f"\nload average: {load_before[0]:.2f} before, {load_after[0]:.2f} after (1-minute)")


if __name__ == "__main__":
    main()
