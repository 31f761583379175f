"""Streaming encode of a large memory-mapped .npy file: peak RSS and throughput against in-memory encode.

Run: .venv/bin/python benchmarks/bench_streaming_encode.py                  (10M x 128, a 5 GB file in /tmp)
     .venv/bin/python benchmarks/bench_streaming_encode.py --rows 500000    (quick)

Steps: fit a 3 x 256 RQ-KMeans on 65,536 rows; write the float32 (N, D) file chunk by chunk (it is
deleted at the end); then, each in a fresh process so peak RSS is its own:
  stream:    sidkit.stream.encode.stream_encode(file -> codes.parquet), timed end to end (read, encode,
             write with SID strings): peak RSS and throughput on the whole file;
  ratio:     --rounds rounds alternating in-memory encode (the first --memory-rows rows loaded into RAM,
             tokenizer.encode timed alone) and streaming the same rows from their own .npy file; the
             median of the per-round throughput ratios (alternating keeps a busy shared machine's load
             from favouring one side).
Peak RSS is the process's VmHWM. If /tmp has too little space, the largest row count that fits (with
2 GB spare) is used, and said so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHUNK_ROWS = 65_536


def peak_rss_mib() -> float:
    """This process's peak resident set (VmHWM), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_embeddings(path: Path, rows: int, dim: int, seed: int) -> None:
    """Clustered float32 rows (256 Gaussian blobs), written chunk by chunk so memory stays small."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(256, dim)).astype(np.float32)
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_2_0(handle, {"descr": "<f4", "fortran_order": False, "shape": (rows, dim)})
        for start in range(0, rows, 1 << 20):
            n = min(1 << 20, rows - start)
            block = centers[rng.integers(0, 256, n)] + 0.5 * rng.standard_normal((n, dim), dtype=np.float32)
            handle.write(block.astype(np.float32).tobytes())


def run_stream(model: Path, data: Path, out: Path) -> dict[str, float]:
    from sidkit.stream.encode import stream_encode
    from sidkit.tokenizers.base import load_tokenizer

    tokenizer = load_tokenizer(model)
    result = stream_encode(tokenizer, data, out, chunk_rows=CHUNK_ROWS, progress=False)
    return {"rows": result.num_items, "seconds": result.seconds, "rows_per_second": result.items_per_second,
            "peak_rss_mib": peak_rss_mib()}


def run_memory(model: Path, data: Path, rows: int) -> dict[str, float]:
    from sidkit.tokenizers.base import load_tokenizer

    tokenizer = load_tokenizer(model)
    x = np.array(np.load(data, mmap_mode="r")[:rows])  # in RAM, not mapped
    started = time.perf_counter()
    codes = tokenizer.encode(x, batch_size=CHUNK_ROWS)
    seconds = time.perf_counter() - started
    return {"rows": len(codes), "seconds": seconds, "rows_per_second": len(codes) / seconds,
            "peak_rss_mib": peak_rss_mib()}


def copy_prefix(source: Path, target: Path, rows: int) -> None:
    """The first ``rows`` rows of ``source`` as their own .npy file, copied in chunks."""
    array = np.load(source, mmap_mode="r")
    with open(target, "wb") as handle:
        header = {"descr": "<f4", "fortran_order": False, "shape": (rows, array.shape[1])}
        np.lib.format.write_array_header_2_0(handle, header)
        for start in range(0, rows, 1 << 20):
            handle.write(np.ascontiguousarray(array[start:min(rows, start + (1 << 20))], dtype="<f4").tobytes())


def worker(args: argparse.Namespace) -> None:
    if args.worker == "stream":
        result = run_stream(args.model, args.data, args.codes)
    else:
        result = run_memory(args.model, args.data, args.memory_rows)
    print(json.dumps(result))


def child(mode: str, model: Path, data: Path, codes: Path, memory_rows: int) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", mode, "--model", str(model), "--data", str(data),
               "--codes", str(codes), "--memory-rows", str(memory_rows)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return dict(json.loads(output.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--memory-rows", type=int, default=2_000_000, help="rows of the in-memory baseline")
    parser.add_argument("--rounds", type=int, default=3, help="alternating in-memory / stream rounds")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the big file goes")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--worker", choices=("stream", "memory"), default=None, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--codes", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return

    from sidkit.tokenizers.rq_kmeans import RQKMeans

    rows, note = args.rows, ""
    free = shutil.disk_usage(args.dir).free
    needed = rows * args.dim * 4 + rows * 40  # embeddings plus the codes file
    if needed > free - (2 << 30):
        rows = max(CHUNK_ROWS, int((free - (2 << 30)) / (args.dim * 4 + 40)))
        note = f"only {free / 2**30:.1f} GiB free in {args.dir}: ran {rows:,} rows instead of {args.rows:,}"
        print(note)
    scratch = Path(tempfile.mkdtemp(prefix="sidkit-bench-stream-", dir=args.dir))
    try:
        data, model, codes = scratch / "x.npy", scratch / "model", scratch / "codes.parquet"
        started = time.perf_counter()
        write_embeddings(data, rows, args.dim, seed=0)
        print(f"wrote {rows:,} x {args.dim} float32 ({data.stat().st_size / 2**30:.2f} GiB) in "
              f"{time.perf_counter() - started:.0f} s")
        sample = np.array(np.load(data, mmap_mode="r")[:CHUNK_ROWS])
        RQKMeans(3, 256, seed=0).fit(sample).save(model)
        stream = child("stream", model, data, codes, 0)
        prefix_rows = min(rows, args.memory_rows)
        prefix = scratch / "prefix.npy"
        copy_prefix(data, prefix, prefix_rows)
        rounds = []
        for _ in range(args.rounds):
            memory = child("memory", model, data, codes, prefix_rows)
            streamed = child("stream", model, prefix, scratch / "prefix.parquet", 0)
            rounds.append({"in_memory": memory, "stream": streamed,
                           "ratio": streamed["rows_per_second"] / memory["rows_per_second"]})
        ratio = float(np.median([r["ratio"] for r in rounds]))
        result = {"rows": rows, "dim": args.dim, "levels": 3, "codebook_size": 256, "note": note,
                  "stream": stream, "ratio_rows": prefix_rows, "rounds": rounds,
                  "stream_to_memory_throughput": ratio, "codes_file_mib": codes.stat().st_size / 2**20}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"stream:    {stream['rows']:,} rows in {stream['seconds']:.1f} s = {stream['rows_per_second']:,.0f} rows/s, "
          f"peak RSS {stream['peak_rss_mib']:.0f} MiB (read, encode, write parquet with SID strings)")
    for number, one in enumerate(rounds, start=1):
        memory, streamed = one["in_memory"], one["stream"]
        print(f"round {number} on {prefix_rows:,} rows: in-memory {memory['rows_per_second']:,.0f} rows/s "
              f"(peak RSS {memory['peak_rss_mib']:.0f} MiB), stream {streamed['rows_per_second']:,.0f} rows/s "
              f"(peak RSS {streamed['peak_rss_mib']:.0f} MiB): ratio {one['ratio']:.2f}")
    print(f"streaming throughput / in-memory throughput (median of {len(rounds)} rounds) = {ratio:.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
