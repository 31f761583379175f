"""The Ray backend on local CPUs against the local streaming path: identical codes, and Ray's overhead.

Run: .venv/bin/python benchmarks/bench_ray.py                      (1M x 128 parquet, 3 x 256, 2 CPUs)
     .venv/bin/python benchmarks/bench_ray.py --rows 100000        (quick)

Needs `pip install 'sidkit[ray]'`. Steps: fit a 3 x 256 RQ-KMeans on 65,536 rows; write the
embeddings as a directory of parquet files (item_id + embedding); encode it
  local: sidkit.stream.encode.stream_encode in this process (torch on --cpus threads);
  ray:   sidkit.backends.ray_backend.ray_encode on a fresh local Ray with --cpus CPUs and one
         tokenizer actor per CPU (one torch thread each), Ray's start-up included and excluded;
and check that the codes are identical item by item. Overhead = Ray wall time / local wall time; the
fixed cost of a pipeline (actors start and import torch) is measured on 1,000 rows and reported too.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def write_parquet_dataset(root: Path, rows: int, dim: int, files: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(256, dim)).astype(np.float32)
    root.mkdir(parents=True)
    for part, ids in enumerate(np.array_split(np.arange(rows, dtype=np.int64), files)):
        x = centers[rng.integers(0, 256, len(ids))] + 0.5 * rng.standard_normal((len(ids), dim), dtype=np.float32)
        embedding = pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), dim)
        pq.write_table(pa.table({"item_id": ids, "embedding": embedding}), root / f"part-{part:03d}.parquet",
                       row_group_size=65_536)


def codes_by_item(path: Path) -> pa.Table:
    table = pq.read_table(path)
    return table.select(["item_id", "level_0", "level_1", "level_2"]).sort_by("item_id")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--batch-rows", type=int, default=65_536)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from sidkit.backends.ray_backend import RayOptions, ray_encode, ray_session, require_ray
    from sidkit.stream.encode import stream_encode
    from sidkit.stream.source import open_embeddings
    from sidkit.tokenizers.rq_kmeans import RQKMeans

    require_ray()
    scratch = Path(tempfile.mkdtemp(prefix="sidkit-bench-ray-"))
    try:
        data, model = scratch / "embeddings", scratch / "model"
        write_parquet_dataset(data, args.rows, args.dim, args.files, seed=0)
        sample = next(open_embeddings(data).chunks(65_536)).embeddings
        RQKMeans(3, 256, seed=0).fit(sample).save(model)

        torch.set_num_threads(args.cpus)
        tokenizer = RQKMeans.load(model)
        local = stream_encode(tokenizer, data, scratch / "local.parquet", chunk_rows=args.batch_rows, progress=False)

        tiny = scratch / "tiny"
        write_parquet_dataset(tiny, 1000, args.dim, 1, seed=1)
        options = RayOptions(num_cpus=args.cpus, actors=args.cpus, batch_rows=args.batch_rows)
        started = time.perf_counter()
        with ray_session(options):
            ready = time.perf_counter()
            result = ray_encode(model, data, scratch / "ray", options)
            # The fixed cost of one pipeline (actors starting, each importing torch and loading the model).
            fixed = ray_encode(model, tiny, scratch / "ray_tiny", options).seconds
        total = time.perf_counter() - started - fixed
        identical = codes_by_item(scratch / "local.parquet").equals(codes_by_item(scratch / "ray"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary = {"rows": args.rows, "dim": args.dim, "cpus": args.cpus, "identical_codes": identical,
               "local_seconds": local.seconds, "ray_seconds": result.seconds, "ray_startup_seconds": ready - started,
               "ray_total_seconds": total, "overhead": result.seconds / local.seconds,
               "overhead_with_startup": total / local.seconds, "pipeline_fixed_seconds": fixed,
               "overhead_without_fixed_cost": (result.seconds - fixed) / local.seconds}
    print(f"local stream: {args.rows:,} rows in {local.seconds:.1f} s ({args.rows / local.seconds:,.0f} rows/s)")
    print(f"ray ({args.cpus} actors): {result.seconds:.1f} s ({args.rows / result.seconds:,.0f} rows/s), plus "
          f"{ready - started:.1f} s to start Ray")
    print(f"identical codes: {identical}; overhead ray / local = {summary['overhead']:.2f} "
          f"({summary['overhead_with_startup']:.2f} with Ray's start-up; "
          f"{summary['overhead_without_fixed_cost']:.2f} without the {fixed:.1f} s fixed cost of a pipeline)")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
