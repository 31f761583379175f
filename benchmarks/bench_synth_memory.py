"""Wall time and peak memory of streaming a large synthetic dataset to disk.

Run: .venv/bin/python benchmarks/bench_synth_memory.py                 (1M items, 10M impressions)
     .venv/bin/python benchmarks/bench_synth_memory.py --items 20000 --interactions 200000   (quick)

Peak memory is the process's maximum resident set size (getrusage ru_maxrss), which also counts the
pages of the memory-mapped embeddings.npy that were touched.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from sidkit.data.synthetic import SyntheticConfig, write_synthetic


def _peak_rss_mib() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def _tree_size_mib(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-rows", type=int, default=1 << 17, help="rows per parquet row group")
    parser.add_argument("--out", type=Path, default=None, help="keep the dataset here (default: a temp dir)")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    args = parser.parse_args(argv)

    config = SyntheticConfig(items=args.items, users=args.users, interactions=args.interactions,
                             dim=args.dim, seed=args.seed)
    baseline = _peak_rss_mib()
    with tempfile.TemporaryDirectory(prefix="sidkit-synth-") as scratch:
        out = args.out if args.out is not None else Path(scratch) / "synthetic"
        start = time.perf_counter()
        manifest = write_synthetic(config, out, progress=args.progress or None, chunk_rows=args.chunk_rows)
        wall = time.perf_counter() - start
        size = _tree_size_mib(out)
    peak = _peak_rss_mib()
    print(f"items {manifest.num_items:,}  users {manifest.num_users:,}  "
          f"interactions {manifest.num_interactions:,}  dim {config.dim}")
    print(f"wall time      {wall:8.1f} s  ({manifest.num_interactions / wall:,.0f} impressions/s)")
    print(f"peak RSS       {peak:8.0f} MiB  (after imports: {baseline:.0f} MiB)")
    print(f"on disk        {size:8.0f} MiB")


if __name__ == "__main__":
    main()
