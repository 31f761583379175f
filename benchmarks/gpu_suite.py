"""The CUDA benchmark suite: sidkit's GPU paths against GPU baselines, as ratios (run by gpu_suite.sh).

Sections (each prints rows of a markdown table: what, sidkit, baseline, ratio):

1. k-means: RQ-KMeans 3 x 256 fit and encode at 1M and 10M x 128 (a Gaussian mixture), against
   faiss-gpu (``faiss.Kmeans(gpu=True)`` per level, ``GpuIndexFlatL2`` search) when it imports and
   sees a GPU, else against plain torch on the same device: Lloyd with ``torch.cdist`` (20 iterations
   per level from random points, as faiss does) and a float32 ``matmul`` + ``argmax`` encode;
2. RQ-VAE and DRQ-VAE: seconds per training epoch on 1M x 128 at batch 4096, as
   (fit(1 + E) - fit(1)) / E so set-up and k-means initialization cancel out;
3. O_pi: ``expected_overlap`` (levels and depths, 8 draws) at 10M x 128;
4. generative retrieval (when ``sidkit.retrieval`` is present): TIGER training windows/s over one
   epoch of ``Tiger.fit`` (its default precision: bfloat16 autocast where the device has it) and
   constrained beam-search (beam 20) users/s, on a synthetic catalogue of 20,000 items and users.

``--tiny`` runs every section at toy sizes on the CPU (or the GPU if asked), in CI-sized time: it
checks that the suite runs, not how fast anything is. Times on CUDA are taken after
``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# isort: off
import sidkit  # noqa: F401  (first: the thread policy must be in place before torch loads)
import torch
# isort: on

from sidkit.threads import set_threads
from sidkit.tokenizers.rq_kmeans import RQKMeans

LEVELS, CODES, DIM = 3, 256, 128


@dataclass(frozen=True)
class Sizes:
    kmeans_rows: tuple[int, ...]
    vae_rows: int
    vae_batch: int
    vae_epochs: int
    overlap_rows: int
    retrieval_items: int
    retrieval_users: int
    beam_users: int


FULL = Sizes((1_000_000, 10_000_000), 1_000_000, 4096, 2, 10_000_000, 20_000, 20_000, 2048)
TINY = Sizes((4096, 8192), 2048, 1024, 1, 4096, 300, 150, 16)


@dataclass(frozen=True)
class Row:
    what: str
    sidkit: float
    baseline: float | None
    unit: str
    baseline_name: str = ""

    def line(self) -> str:
        if self.baseline is None:
            return f"| {self.what} | {self.sidkit:,.3g} {self.unit} | | |"
        better_low = self.unit == "s"
        ratio = self.baseline / self.sidkit if better_low else self.sidkit / self.baseline
        return (f"| {self.what} | {self.sidkit:,.3g} {self.unit} | {self.baseline:,.3g} {self.unit} "
                f"({self.baseline_name}) | **{ratio:.2f}x** |")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    sync(device)
    started = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - started, result


def mixture(n: int, seed: int = 0) -> np.ndarray:
    """(n, 128) float32: 1,000 Gaussian clusters, drawn in blocks so 10M rows fit in memory once."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, DIM)).astype(np.float32)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 1 << 20):
        stop = min(n, start + (1 << 20))
        out[start:stop] = centers[rng.integers(0, 1000, stop - start)]
        out[start:stop] += 0.5 * rng.standard_normal((stop - start, DIM), dtype=np.float32)
    return out


# ----- 1. k-means ---------------------------------------------------------------------------------


def faiss_gpu() -> object | None:
    if importlib.util.find_spec("faiss") is None:
        return None
    import faiss

    return faiss if hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0 else None


def torch_lloyd_fit(x: torch.Tensor, iterations: int = 20) -> list[torch.Tensor]:
    """Per-level Lloyd with torch.cdist from random points (faiss's recipe), on a 65,536-row sample."""
    generator = torch.Generator(device=x.device).manual_seed(0)
    sample = x[torch.randperm(len(x), generator=generator, device=x.device)[:CODES * 256]]
    residual, books = sample.clone(), []
    for _ in range(LEVELS):
        centers = residual[torch.randperm(len(residual), generator=generator, device=x.device)[:CODES]].clone()
        for _ in range(iterations):
            chosen = torch.cdist(residual, centers).argmin(1)
            sums = torch.zeros_like(centers).index_add_(0, chosen, residual)
            counts = torch.bincount(chosen, minlength=CODES).clamp_min(1).unsqueeze(1)
            centers = sums / counts
        residual -= centers[torch.cdist(residual, centers).argmin(1)]
        books.append(centers)
    return books


def torch_encode(x: np.ndarray, books: list[torch.Tensor], chunk: int = 1 << 18) -> np.ndarray:
    """float32 matmul + argmax per level, chunk by chunk from host memory."""
    device = books[0].device
    half = [-0.5 * book.square().sum(1) for book in books]
    codes = np.empty((len(x), LEVELS), dtype=np.int64)
    for start in range(0, len(x), chunk):
        residual = torch.from_numpy(x[start:start + chunk]).to(device)
        for level, book in enumerate(books):
            chosen = torch.addmm(half[level], residual, book.T).argmax(1)
            codes[start:start + chunk, level] = chosen.cpu().numpy()
            residual -= book[chosen]
    return codes


def kmeans_rows(sizes: Sizes, device: torch.device) -> list[Row]:
    rows: list[Row] = []
    faiss = faiss_gpu() if device.type == "cuda" else None
    for n in sizes.kmeans_rows:
        x = mixture(n)
        fit_s, model = seconds(lambda x=x: RQKMeans(LEVELS, CODES, seed=0).fit(x, device=device), device)
        assert isinstance(model, RQKMeans)
        model.encode(x[:65536])
        encode_s, _ = seconds(lambda x=x, model=model: model.encode(x, batch_size=1 << 18), device)
        if faiss is not None:
            name = "faiss-gpu"

            def peer_fit(x: np.ndarray = x) -> list[np.ndarray]:
                residual, books = x.copy(), []
                for level in range(LEVELS):
                    km = faiss.Kmeans(DIM, CODES, niter=20, seed=1234 + level, gpu=True)  # type: ignore[attr-defined]
                    km.train(residual)
                    _, chosen = km.index.search(residual, 1)
                    residual -= km.centroids[chosen[:, 0]]
                    books.append(km.centroids.copy())
                return books

            peer_fit_s, books = seconds(peer_fit, device)

            def peer_encode(x: np.ndarray = x, books: list[np.ndarray] = books) -> None:  # type: ignore[assignment]
                resources = faiss.StandardGpuResources()  # type: ignore[attr-defined]
                residual = x.copy()
                for book in books:
                    index = faiss.GpuIndexFlatL2(resources, DIM)  # type: ignore[attr-defined]
                    index.add(book)
                    _, chosen = index.search(residual, 1)
                    residual -= book[chosen[:, 0]]

            peer_encode_s, _ = seconds(peer_encode, device)
        else:
            name = "torch cdist/matmul"
            tensor = torch.from_numpy(x).to(device)
            peer_fit_s, books = seconds(lambda tensor=tensor: torch_lloyd_fit(tensor), device)
            del tensor
            peer_encode_s, _ = seconds(lambda x=x, books=books: torch_encode(x, books), device)  # type: ignore[misc]
        rows.append(Row(f"RQ-KMeans fit, {n:,} x {DIM}", fit_s, peer_fit_s, "s", name))
        rows.append(Row(f"RQ-KMeans encode, {n:,} x {DIM}", n / encode_s, n / peer_encode_s, "items/s", name))
    return rows


# ----- 2. RQ-VAE and DRQ-VAE epochs ---------------------------------------------------------------


def vae_rows(sizes: Sizes, device: torch.device) -> list[Row]:
    from sidkit.tokenizers.drq import DRQVAE
    from sidkit.tokenizers.rq_vae import RQVAE

    x = mixture(sizes.vae_rows, seed=1)
    rows = []
    for name, cls in (("RQ-VAE", RQVAE), ("DRQ-VAE", DRQVAE)):
        def fit(epochs: int, cls: type = cls) -> float:
            model = cls(LEVELS, CODES, epochs=epochs, batch_size=sizes.vae_batch, validation_share=0.0,
                        patience=None, progress=False, seed=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                return seconds(lambda: model.fit(x, device=device), device)[0]

        per_epoch = (fit(1 + sizes.vae_epochs) - fit(1)) / sizes.vae_epochs
        rows.append(Row(f"{name} epoch, {sizes.vae_rows:,} x {DIM}, batch {sizes.vae_batch}",
                        max(per_epoch, 1e-9), None, "s"))
    return rows


# ----- 3. O_pi ------------------------------------------------------------------------------------


def overlap_rows(sizes: Sizes, device: torch.device) -> list[Row]:
    from sidkit.diagnostics.overlap import expected_overlap

    x = mixture(sizes.overlap_rows, seed=2)
    model = RQKMeans(LEVELS, CODES, seed=0).fit(x[: CODES * 256], device=device)
    spent, _ = seconds(lambda: expected_overlap(model, x, 0.1, 8, by=("level", "depth"), seed=0), device)
    return [Row(f"O_pi (levels and depths, 8 draws), {sizes.overlap_rows:,} x {DIM}", spent, None, "s")]


# ----- 4. generative retrieval --------------------------------------------------------------------


def retrieval_rows(sizes: Sizes, device: torch.device) -> list[Row]:
    """TIGER training windows/s (one epoch of :meth:`Tiger.fit`, its own precision) and constrained
    beam-search users/s; [] (with a note) without sidkit.retrieval."""
    if importlib.util.find_spec("sidkit.retrieval") is None:
        print("TIGER: skipped (this sidkit has no sidkit.retrieval)")
        return []
    from sidkit.data.synthetic import SyntheticConfig, generate_synthetic
    from sidkit.retrieval.data import build_next_item_data
    from sidkit.retrieval.tiger import Tiger, TigerConfig, tiger_codes

    topics = (16, 8, 8) if sizes.retrieval_items >= 1024 else (4, 4, 4)
    dataset = generate_synthetic(SyntheticConfig(items=sizes.retrieval_items, users=sizes.retrieval_users,
                                                 interactions=sizes.retrieval_users * 40, dim=64, topics=topics,
                                                 seed=0), progress=False)
    x = dataset.catalog.embeddings
    assert x is not None
    codes = tiger_codes(RQKMeans(3, 64, seed=0).fit(x).encode(x), dataset.catalog.item_ids)
    data = build_next_item_data(dataset)
    config = TigerConfig(epochs=1, patience=1, valid_examples=sizes.beam_users)
    tiger = Tiger(codes, config, device=str(device), progress=False)
    tiger.fit(data)
    assert tiger.history_ is not None
    epoch = tiger.history_.epochs[0]
    test = data.test.take(np.arange(min(sizes.beam_users, len(data.test))))
    tiger.recommend(test.take(np.arange(min(len(test), 8))), 20)  # warm-up
    beam_s, _ = seconds(lambda: tiger.recommend(test, 20), device)
    return [Row(f"TIGER training ({tiger.history_.precision}), {len(codes):,} items, batch {config.batch_size}",
                epoch.examples / epoch.seconds, None, "windows/s"),
            Row(f"TIGER beam search (beam {config.beam}), {len(test):,} users", len(test) / beam_s, None, "users/s")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="toy sizes, CPU unless --device is given")
    parser.add_argument("--device", default=None, help="default: cuda (cpu with --tiny)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: sidkit's)")
    parser.add_argument("--sections", nargs="+", default=["kmeans", "vae", "overlap", "retrieval"],
                        choices=["kmeans", "vae", "overlap", "retrieval"])
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cpu" if args.tiny else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --tiny (CPU) or on a machine with a GPU", file=sys.stderr)
        return 2
    threads = set_threads(args.threads)
    sizes = TINY if args.tiny else FULL
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"sidkit GPU suite{' (--tiny)' if args.tiny else ''}: device {device} ({name}), torch {torch.__version__}, "
          f"{threads.describe()}, load average {os.getloadavg()[0]:.1f}")
    started = time.perf_counter()
    print("| measurement | sidkit | baseline | ratio (above 1: sidkit faster) |")
    print("|---|---:|---:|---:|")
    sections = {"kmeans": kmeans_rows, "vae": vae_rows, "overlap": overlap_rows, "retrieval": retrieval_rows}
    for section in args.sections:
        for row in sections[section](sizes, device):
            print(row.line(), flush=True)
    print(f"total {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
