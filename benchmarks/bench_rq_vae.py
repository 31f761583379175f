"""RQ-VAE training speed: sidkit's RQVAE vs semantic-id's RQVAE, seconds per epoch, same everything.

Same architecture (D -> 512 -> 256 -> 128 -> 32, mirrored decoder, L levels x K codes, beta 0.25),
same data, same batch size, AdamW, CPU, one torch thread each (``--threads``). What differs is each
library's own loop: semantic-id batches through a DataLoader over a TensorDataset; sidkit slices one
tensor by a seeded permutation, runs each MLP as one autograd node of oneDNN GEMMs with bias and ReLU
fused, finds nearest codewords with one GEMM per level, and ties the quantizer's loss gradients in one
node. sidkit is timed twice: with its default precision (``bfloat16=None``: the MLP GEMMs of training
steps in bfloat16 where the CPU has it natively, float32 everywhere else; float32 on other CPUs) and
in float32 throughout (``bfloat16=False``).

The measure is CPU time per epoch, (CPU(fit with 1 + E epochs) - CPU(fit with 1 epoch)) / E, so model
set-up and codebook initialization cancel out. CPU time, not wall time: the development machine has
2 cores shared with other jobs, and wall time there measures the neighbours (the same run gave 0.1 or
0.6 s per epoch); a one-thread process's CPU time is the work itself. Runs alternate, ``--repeats``
times each, and the medians are compared.

    .venv/bin/python benchmarks/bench_rq_vae.py                       # ML-100K and synthetic 100k
    .venv/bin/python benchmarks/bench_rq_vae.py --datasets ml-100k --epochs 10 --repeats 5
    .venv/bin/python benchmarks/bench_rq_vae.py --loader both        # idle and with one core busy

``--loader both`` measures every repeat twice, on the machine as it is and with a second process
spinning on one core (``busy.busy_core``); wall time and the load average are printed beside the CPU
time. Each table row ends with the bound: the MLP GEMMs of an epoch (forward, input and weight
gradients at the batch shapes) timed alone in the same process, in float32 and bfloat16, as a share
of semantic-id's epoch.

A MovieLens epoch is about 0.05 s, so few timed epochs leave the difference of two fits in the noise
of the fits' set-up; 10 epochs and 5 repeats give stable ratios there.

Needs ``pip install semantic-id`` (install it with --no-deps if pip would change torch).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from sidkit.tokenizers.linear import gemm_dtype
from sidkit.tokenizers.networks import mlp
from sidkit.tokenizers.rq_vae import RQVAE
from sidkit.tokenizers.training import training_dtype

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from busy import busy_core

HIDDEN, LATENT = (512, 256, 128), 32


def movielens() -> np.ndarray:
    """(1682, 384) MiniLM embeddings of the ML-100K movie texts (cached on disk after the first run)."""
    from sidkit.data.movielens import load_movielens_100k
    from sidkit.embed import embed_texts

    return embed_texts(list(load_movielens_100k().catalog.text))


def synthetic() -> np.ndarray:
    """(100000, 64) embeddings of sidkit's synthetic catalog (seed 0; cached on disk after the first run)."""
    from sidkit.data.synthetic import SyntheticConfig, generate_synthetic
    from sidkit.io import atomic_path

    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sidkit-bench" / "synthetic-100k.npy"
    if cache.is_file():
        return np.load(cache)
    x = generate_synthetic(SyntheticConfig(items=100_000, users=1_000, interactions=10_000),
                           progress=False).catalog.embeddings
    with atomic_path(cache) as temporary, open(temporary, "wb") as handle:
        np.save(handle, x)
    return x


DATASETS: dict[str, tuple[Callable[[], np.ndarray], int, int]] = {
    # name: (loader, codes per level, batch size)
    "ml-100k": (movielens, 64, 256),
    "synthetic-100k": (synthetic, 256, 1024),
}


def cost(run: Callable[[], object]) -> tuple[float, float]:
    """(wall, CPU) seconds ``run()`` takes in this process (CPU: all its threads)."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def per_epoch(fit: Callable[[int], object], epochs: int) -> tuple[float, float]:
    """(cost of fit(1 + epochs) - cost of fit(1)) / epochs, wall and CPU: set-up and initialization cancel."""
    long, short = cost(lambda: fit(1 + epochs)), cost(lambda: fit(1))
    return (long[0] - short[0]) / epochs, (long[1] - short[1]) / epochs


def mlp_gemm_seconds(dim: int, batch: int, dtype: torch.dtype, repeats: int = 20) -> tuple[float, float]:
    """(CPU seconds, GFLOP) of one training step's MLP GEMMs alone: sidkit's fused encoder and decoder,
    forward and backward, on a (batch, dim) input (best of ``repeats``; CPU time, as the epochs)."""
    encoder, decoder = mlp([dim, *HIDDEN, LATENT]), mlp([LATENT, *reversed(HIDDEN), dim])
    x = torch.randn(batch, dim)
    widths = [dim, *HIDDEN, LATENT]
    macs = sum(a * b for a, b in itertools.pairwise(widths))  # per row, encoder = decoder
    # forward + weight gradient for every layer of both MLPs; input gradient for all but the encoder's first
    flops = 2 * batch * (2 * macs + 2 * macs + (2 * macs - dim * HIDDEN[0]))

    def step() -> None:
        with gemm_dtype(dtype):
            latent = encoder(x)
            decoder(latent).sum().backward()

    step()
    best = min(cost(step)[1] for _ in range(repeats))
    return best, flops / 1e9
def sidkit_fit(x: np.ndarray, levels: int, codes: int, batch: int, *,
               bfloat16: bool | None = None) -> Callable[[int], object]:
    def fit(epochs: int) -> object:
        model = RQVAE(levels, codes, latent_dim=LATENT, hidden_dims=HIDDEN, epochs=epochs, batch_size=batch,
                      validation_share=0.0, patience=None, bfloat16=bfloat16, progress=False, seed=0)
        with warnings.catch_warnings():  # a few epochs do not leave the early collapse: no warning
            warnings.simplefilter("ignore", RuntimeWarning)
            return model.fit(x)

    return fit


def semantic_id_fit(x: np.ndarray, levels: int, codes: int, batch: int) -> Callable[[int], object]:
    from semantic_id.algorithms.rq_vae import RQVAE as PeerRQVAE

    def fit(epochs: int) -> object:
        model = PeerRQVAE(in_dim=x.shape[1], num_emb_list=[codes] * levels, e_dim=LATENT, layers=list(HIDDEN),
                          beta=0.25, batch_size=batch, epochs=epochs, lr=1e-3, device="cpu")
        return model.fit(x)

    return fit


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each library")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for both")
    parser.add_argument("--loader", choices=("none", "busy", "both"), default="none",
                        help="measure with a second process busy on one core: never, only, or both ways")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        import semantic_id  # noqa: F401
    except ImportError:
        print("semantic-id is not installed: pip install semantic-id", file=sys.stderr)
        return 1
    print(f"command: .venv/bin/python benchmarks/bench_rq_vae.py --datasets {' '.join(args.datasets)} "
          f"--levels {args.levels} --epochs {args.epochs} --repeats {args.repeats}"
          f" --threads {args.threads} --loader {args.loader}")
    default = training_dtype(None, torch.device("cpu"))
    print(f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}, "
          f"sidkit's default training precision here: {str(default).removeprefix('torch.')}")
    loads = {"none": (False,), "busy": (True,), "both": (False, True)}[args.loader]
    print("| data | items x dim | L x K | batch (steps per epoch) | loader | sidkit default CPU s/epoch | "
          "sidkit float32 | semantic-id CPU s/epoch | ratio (default) | ratio float32 | wall ratio (default) | "
          "MLP GEMMs float32 / semantic-id epoch (GFLOP/s) | MLP GEMMs default / semantic-id epoch (GFLOP/s) | "
          "load average |")
    print("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in args.datasets:
        loader, codes, batch = DATASETS[name]
        x = np.ascontiguousarray(loader(), dtype=np.float32)
        steps = -(-x.shape[0] // batch)
        for fit in (sidkit_fit(x, args.levels, codes, batch), semantic_id_fit(x, args.levels, codes, batch)):
            fit(1)  # warm-up: a process's first fit pays one-time checks and allocations
        for busy in loads:
            ours, ours_f32, theirs, load = [], [], [], [os.getloadavg()[0]]
            with busy_core(busy):
                for _ in range(args.repeats):
                    ours.append(per_epoch(sidkit_fit(x, args.levels, codes, batch), args.epochs))
                    ours_f32.append(per_epoch(sidkit_fit(x, args.levels, codes, batch, bfloat16=False), args.epochs))
                    theirs.append(per_epoch(semantic_id_fit(x, args.levels, codes, batch), args.epochs))
                    load.append(os.getloadavg()[0])
                gemms = {dtype: mlp_gemm_seconds(x.shape[1], batch, dtype) for dtype in (torch.float32, default)}
            wall = [statistics.median(w for w, _ in runs) for runs in (ours, ours_f32, theirs)]
            cpu = [statistics.median(c for _, c in runs) for runs in (ours, ours_f32, theirs)]
            floors = {dtype: (steps * seconds / cpu[2], flops / seconds) for dtype, (seconds, flops) in gemms.items()}
            low, high = min(load), max(load)
            f32, low_precision = floors[torch.float32], floors[default]
            print(f"| {name} | {x.shape[0]:,} x {x.shape[1]} | {args.levels} x {codes} | {batch} ({steps} steps) | "
                  f"{'one core busy' if busy else 'none'} | {cpu[0]:.3f} | {cpu[1]:.3f} | {cpu[2]:.3f} | "
                  f"**{cpu[0] / cpu[2]:.2f}** | {cpu[1] / cpu[2]:.2f} | {wall[0] / wall[2]:.2f} | "
                  f"{f32[0]:.2f} ({f32[1]:.0f}) | {low_precision[0]:.2f} ({low_precision[1]:.0f}) | "
                  f"{low:.1f} to {high:.1f} |", flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
