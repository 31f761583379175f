"""Fuzz the sidkit CLI: unwritable outputs, corrupted inputs, models and registries, bad options, kills.

    python scripts/fuzz_cli.py [--only CATEGORY_OR_NAME] [--no-crash] [--work DIR] [--json FILE]

Runs every case of six categories (output, input, model, options, registry, crash) against the
commands they apply to and prints one verdict per case and the totals. A case expects either

- "error": exit status 2, exactly one line on stderr that starts with "error:" and holds "Fix:",
  no traceback, and the working directory byte for byte as the setup left it (no partial output,
  no temporary file), plus any check of its own (e.g. the message names --rho); or
- "ok": exit status 0 and its check of what was written (a documented, intended success).

Every case runs in a forked child of this process (torch is imported once) in a directory of its
own. The crash cases run real processes and SIGKILL them at every file rename of a run over an
earlier output (the output must then be the old one or the new one, whole), interrupt an encode
with Ctrl-C, and check that a later run removes what a killed one left. Cases that need a tmpfs
(read-only media, a 2 MB full disk) are skipped where `mount` is not permitted; as root, the
permission cases run as the user nobody. Takes about 15 minutes on one core.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

torch.set_num_threads(1)

import sidkit.cli  # noqa: E402  (import everything before forking)
import sidkit.compare  # noqa: E402
import sidkit.ranking.experiment  # noqa: E402
import sidkit.registry  # noqa: E402
import sidkit.retrieval.experiment  # noqa: E402,F401
from sidkit.cli import main as sidkit_main  # noqa: E402

ROOT = Path(".")  # set by main (--work)
SIDKIT = str(Path(sys.executable).parent / "sidkit")


@dataclass
class Case:
    category: str
    name: str
    argv: list[str]
    expect: str = "error"  # or "ok"
    setup: Callable[[Path], None] | None = None
    check: Callable[[Path], str | None] | None = None  # a problem, or None
    subprocess: bool = False
    user: bool = False  # run as nobody (permission checks bite only without root)


@dataclass
class Outcome:
    case: Case
    rc: int
    stderr: str
    stdout: str
    problem: str | None = None
    verdict: str = ""
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- fixtures


def sh(*argv: str, cwd: Path | None = None) -> None:
    subprocess.run([SIDKIT, *argv], check=True, cwd=cwd, capture_output=True)


def build_fixtures(base: Path) -> dict[str, Path]:
    fx = base / "fixtures"
    if (fx / "done").is_file():
        return _fixture_paths(fx)
    shutil.rmtree(fx, ignore_errors=True)
    fx.mkdir(parents=True)
    sh("data", "synth", "--items", "1100", "--users", "100", "--interactions", "6000", "--dim", "16", "--out",
       str(fx / "data"))
    sh("fit", "--levels", "2", "--codebook-size", "8", "--data", str(fx / "data"), "--out", str(fx / "model"))
    sh("fit", "--levels", "2", "--codebook-size", "4", "--data", str(fx / "data"), "--out", str(fx / "model4"))
    sh("assign", "--model", str(fx / "model"), "--registry", str(fx / "reg.sqlite"), "--data", str(fx / "data"))
    x = np.load(fx / "data" / "embeddings.npy")
    np.save(fx / "emb.npy", x)
    ids = pq.read_table(fx / "data" / "items.parquet").column("item_id").to_numpy()
    pq.write_table(pa.table({"item_id": ids, "embedding": list(x)}), fx / "emb.parquet")
    # GroupLens-format MovieLens source in miniature (valid)
    gl = fx / "ml"
    gl.mkdir()
    (gl / "u.item").write_text("".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|" + "|".join(
        ["0"] * 18 + ["1"]) + "\n" for i in range(1, 21)), encoding="latin-1")
    (gl / "u.user").write_text("".join(f"{u}|30|M|other|12345\n" for u in range(1, 11)), encoding="latin-1")
    rng = np.random.default_rng(0)
    (gl / "u.data").write_text("".join(f"{rng.integers(1, 11)}\t{rng.integers(1, 21)}\t{rng.integers(1, 6)}\t"
                                       f"{880000000 + k}\n" for k in range(200)))
    (fx / "done").write_text("1")
    return _fixture_paths(fx)


def _fixture_paths(fx: Path) -> dict[str, Path]:
    return {n: fx / n for n in ("data", "model", "model4", "reg.sqlite", "emb.npy", "emb.parquet", "ml")}


FX: dict[str, Path] = {}


def copytree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)


# ---------------------------------------------------------------- mounts

MOUNTS: list[Path] = []


class Skip(Exception):
    """A case this machine cannot set up (no permission to mount a tmpfs)."""


def tmpfs(path: Path, size: str = "2m", readonly: bool = False, fill: Callable[[Path], None] | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        raise Skip("cannot mount a tmpfs here")
    MOUNTS.append(path)
    if fill is not None:
        fill(path)
    if readonly:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
    return path


def full_disk(path: Path) -> Path:
    """A 2 MB tmpfs with about 16 KB left."""
    def fill(p: Path) -> None:
        with open(p / "filler", "wb") as handle, contextlib.suppress(OSError):
            handle.write(b"\0" * (4 * 1024 * 1024))
    return tmpfs(path, fill=fill)


def unmount_all() -> None:
    for path in reversed(MOUNTS):
        subprocess.run(["umount", "-l", str(path)], check=False)
    MOUNTS.clear()


# ---------------------------------------------------------------- writing bad files


def npy_bytes(shape: tuple[int, ...], dtype: str = "<f4", fortran: bool = False) -> bytes:
    header = {"descr": dtype, "fortran_order": fortran, "shape": shape}
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def write_truncated_npy(path: Path) -> None:
    x = np.load(FX["emb.npy"])
    data = npy_bytes(x.shape) + x.tobytes()
    path.write_bytes(data[: len(data) // 2])


def write_lying_npy(path: Path) -> None:
    x = np.load(FX["emb.npy"])
    path.write_bytes(npy_bytes((x.shape[0] * 3, x.shape[1])) + x.tobytes())


def write_long_npy(path: Path) -> None:  # header says fewer rows than the file holds
    x = np.load(FX["emb.npy"])
    path.write_bytes(npy_bytes((x.shape[0] // 2, x.shape[1])) + x.tobytes())


def dataset_with_npy(writer: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(cwd: Path) -> None:
        copytree(FX["data"], cwd / "d")
        writer(cwd / "d" / "embeddings.npy")
    return setup


def files_setup(files: dict[str, Callable[[Path], None]]) -> Callable[[Path], None]:
    def setup(cwd: Path) -> None:
        for name, writer in files.items():
            writer(cwd / name)
    return setup


def parquet_writer(table_fn: Callable[[], pa.Table]) -> Callable[[Path], None]:
    return lambda path: pq.write_table(table_fn(), path)


def emb_table(**columns: object) -> Callable[[], pa.Table]:
    return lambda: pa.table({"item_id": pa.array(range(5), pa.int64()), **columns})


def interactions_table(timestamps: pa.Array) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        n = len(timestamps)
        pq.write_table(pa.table({"user_id": pa.array([i % 3 for i in range(n)], pa.int64()),
                                 "item_id": pa.array([i % 5 for i in range(n)], pa.int64()),
                                 "timestamp": timestamps, "rating": pa.array([4.0] * n)}), path)
    return write


def items_table(path: Path) -> None:
    pq.write_table(pa.table({"item_id": pa.array(range(5), pa.int64()), "text": [f"item {i}" for i in range(5)]}),
                   path)


def model_copy(mutate: Callable[[Path], None], src: str = "model") -> Callable[[Path], None]:
    def setup(cwd: Path) -> None:
        copytree(FX[src], cwd / "m")
        mutate(cwd / "m")
    return setup


def edit_weights(fn: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> Callable[[Path], None]:
    def mutate(m: Path) -> None:
        from safetensors.torch import load_file, save_file

        tensors = load_file(str(m / "weights.safetensors"))
        save_file(fn(tensors), str(m / "weights.safetensors"), metadata={"format": "sidkit-tokenizer"})
    return mutate


def edit_config(fn: Callable[[dict], None]) -> Callable[[Path], None]:
    def mutate(m: Path) -> None:
        config = json.loads((m / "config.json").read_text())
        fn(config)
        (m / "config.json").write_text(json.dumps(config))
    return mutate


def nan_weights(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    t = dict(t)
    t["codebook.0"] = t["codebook.0"].clone()
    t["codebook.0"][0, 0] = float("nan")
    return t


def inf_weights(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    t = dict(t)
    t["codebook.1"] = t["codebook.1"].clone()
    t["codebook.1"][1, 1] = float("inf")
    return t


def fewer_levels(config: dict) -> None:
    config["config"]["levels"] = 1
    config["config"]["codebook_size"] = 8
    config["codebook_sizes"] = [8]


def registry_copy(mutate: Callable[[Path], None] | None = None) -> Callable[[Path], None]:
    def setup(cwd: Path) -> None:
        shutil.copy(FX["reg.sqlite"], cwd / "r.sqlite")
        if mutate:
            mutate(cwd / "r.sqlite")
    return setup


def sql(*statements: str) -> Callable[[Path], None]:
    def mutate(path: Path) -> None:
        db = sqlite3.connect(path)
        for statement in statements:
            db.execute(statement)
        db.commit()
        db.close()
    return mutate


def corrupt_pages(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for offset in range(4096 + 100, min(len(data), 4096 * 3), 7):
        data[offset] = (data[offset] * 31 + 17) % 256
    path.write_bytes(bytes(data))


def foreign_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO customers(name) VALUES ('alice')")
    db.commit()
    db.close()


# ---------------------------------------------------------------- checks


def exists(*names: str) -> Callable[[Path], str | None]:
    def check(cwd: Path) -> str | None:
        missing = [n for n in names if not (cwd / n).exists()]
        return f"missing {missing}" if missing else None
    return check


def absent(*names: str) -> Callable[[Path], str | None]:
    def check(cwd: Path) -> str | None:
        present = [n for n in names if (cwd / n).exists()]
        return f"should not exist: {present}" if present else None
    return check


def only_files(*names: str) -> Callable[[Path], str | None]:
    def check(cwd: Path) -> str | None:
        got = sorted(p.name for p in cwd.iterdir())
        return None if got == sorted(names) else f"directory holds {got}, expected {sorted(names)}"
    return check


def no_temp_files(cwd: Path) -> str | None:
    temps = [str(p.relative_to(cwd)) for p in cwd.rglob("*") if p.name.startswith(".") and
             (p.name.endswith(".tmp") or ".tmp" in p.name or p.name.endswith(".old"))]
    return f"temp files left: {temps}" if temps else None


def both(*checks: Callable[[Path], str | None]) -> Callable[[Path], str | None]:
    def check(cwd: Path) -> str | None:
        for c in checks:
            problem = c(cwd)
            if problem:
                return problem
        return None
    return check


def loads_model(name: str, sizes: tuple[int, ...] | None = None) -> Callable[[Path], str | None]:
    def check(cwd: Path) -> str | None:
        from sidkit.tokenizers.base import load_tokenizer

        try:
            tok = load_tokenizer(cwd / name)
        except Exception as error:
            return f"model {name} does not load: {error}"
        if sizes is not None and tok.codebook_sizes != sizes:
            return f"model sizes {tok.codebook_sizes}, expected {sizes}"
        return None
    return check


def registry_rows(name: str, rows: int) -> Callable[[Path], str | None]:
    def check(cwd: Path) -> str | None:
        path = cwd / name
        if not path.is_file():
            return f"{name} not written; dir holds {sorted(p.name for p in cwd.iterdir())}"
        got = sqlite3.connect(path).execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return None if got == rows else f"{got} rows in {name}, expected {rows}"
    return check


def stderr_mentions(*words: str) -> Callable[[Path], str | None]:
    """Special: checked against stderr by the runner (marked by attribute)."""
    def check(cwd: Path) -> str | None:
        return None
    check.words = words  # type: ignore[attr-defined]
    return check


# ---------------------------------------------------------------- the cases


def cases() -> list[Case]:
    d, m, m4, _emb, _embp, ml = (str(FX[k]) for k in ("data", "model", "model4", "emb.npy", "emb.parquet", "ml"))
    out: list[Case] = []
    add = out.append

    # 1. Output paths --------------------------------------------------------------------------
    def ro_dir(cwd: Path) -> None:
        tmpfs(cwd / "ro", readonly=True)

    def perm_dir(cwd: Path) -> None:
        (cwd / "locked").mkdir()
        os.chmod(cwd / "locked", 0o555)
        os.chmod(cwd, 0o777)

    def parent_file(cwd: Path) -> None:
        (cwd / "afile").write_text("x")

    def a_dir(name: str) -> Callable[[Path], None]:
        return lambda cwd: (cwd / name).mkdir()

    def a_file(name: str) -> Callable[[Path], None]:
        return lambda cwd: (cwd / name).write_text("precious")

    def full(cwd: Path) -> None:
        full_disk(cwd / "full")

    targets = {
        "encode": lambda o: ["encode", "--model", m, "--data", d, "--out",
                             o + ("" if o.endswith((".npy", ".parquet")) else "/c.parquet")],
        "diagnose": lambda o: ["diagnose", "--model", m, "--data", d, "--json",
                               o + ("" if o.endswith(".json") else "/d.json")],
        "fit": lambda o: ["fit", "--levels", "2", "--codebook-size", "4", "--data", d, "--out", o],
        "compare": lambda o: ["compare", "--data", d, "--methods", "rq-kmeans", "--levels", "2", "--codebook-size", "4",
                              "--no-stability", "--no-report", "--samples", "3", "--rho", "0.1", "--out", o],
        "rank": lambda o: ["rank", "--data", d, "--features", "hash", "--seeds", "1", "--epochs", "1", "--no-report",
                           "--out", o],
        "synth": lambda o: ["data", "synth", "--items", "1100", "--users", "20", "--interactions", "500", "--dim", "8",
                            "--out", o],
        "fetch": lambda o: ["data", "fetch", "movielens-100k", "--source", ml, "--out", o],
        "import": lambda o: ["data", "import", "--items", str(FX["data"] / "items.parquet"), "--interactions",
                             str(FX["data"] / "interactions.parquet"), "--out", o],
        "assign": lambda o: ["assign", "--model", m, "--data", d, "--registry",
                             o + ("" if o.endswith(".sqlite") else "/r.sqlite")],
        "retrieve": lambda o: ["retrieve", "--data", d, "--models", "popularity", "--seeds", "1", "--no-report",
                               "--out", o],
    }
    file_outputs = {"encode": "c.parquet", "diagnose": "d.json", "assign": "r.sqlite"}
    for command, argv in targets.items():
        add(Case("output", f"{command}: read-only folder (EROFS)", argv("ro/x"), setup=ro_dir))
        add(Case("output", f"{command}: permission denied", argv("locked/x"), setup=perm_dir, user=True))
        add(Case("output", f"{command}: parent is a file", argv("afile/x"), setup=parent_file))
        add(Case("output", f"{command}: full disk", argv("full/x"), setup=full, check=no_temp_files))
        if command in file_outputs:
            add(Case("output", f"{command}: --out is a directory", argv(file_outputs[command]),
                     setup=a_dir(file_outputs[command])))
        else:
            add(Case("output", f"{command}: --out names an existing file", argv("existing"),
                     setup=a_file("existing"), check=lambda cwd: None if (cwd / "existing").read_text() == "precious"
                     else "the file was changed"))
    add(Case("output", "embed: read-only dataset folder", ["embed", "--data", "ro/d"],
             setup=lambda cwd: tmpfs(cwd / "ro", size="8m", readonly=True,
                                     fill=lambda p: copytree(FX["data"], p / "d"))))
    add(Case("output", "encode: --out names an existing file (ok, replaced)", ["encode", "--model", m, "--data", d,
             "--out", "c.parquet"], expect="ok", setup=a_file("c.parquet"), check=exists("c.parquet")))

    # 2. Corrupted inputs -----------------------------------------------------------------------
    bad_npys: dict[str, Callable[[Path], None]] = {
        "truncated npy": write_truncated_npy,
        "lying header (more rows)": write_lying_npy,
        "lying header (fewer rows)": write_long_npy,
        "empty file": lambda p: p.write_bytes(b""),
        "zero rows": lambda p: np.save(p, np.zeros((0, 16), np.float32)),
        "zero dims": lambda p: np.save(p, np.zeros((10, 0), np.float32)),
        "1-d array": lambda p: np.save(p, np.zeros(10, np.float32)),
        "strings": lambda p: np.save(p, np.array([["a"] * 16] * 10)),
        "object (pickle)": lambda p: np.save(p, np.array([[object()] * 2], dtype=object), allow_pickle=True),
        "bool": lambda p: np.save(p, np.ones((1100, 16), bool)),
        "complex": lambda p: np.save(p, np.ones((1100, 16), np.complex64)),
        "structured": lambda p: np.save(p, np.zeros(1100, dtype=[("a", "<f4"), ("b", "<f4")])),
        "NaN row": lambda p: np.save(p, np.where(np.arange(1100)[:, None] == 7, np.nan, np.load(FX["emb.npy"]))),
        "not npy at all": lambda p: p.write_bytes(b"hello world, this is not numpy" * 10),
        "header only": lambda p: p.write_bytes(npy_bytes((300, 16))),
    }
    for label, writer in bad_npys.items():
        for command in ("encode", "diagnose", "fit", "assign"):
            argv = {"encode": ["encode", "--model", m, "--data", "d", "--out", "c.parquet"],
                    "diagnose": ["diagnose", "--model", m, "--data", "d"],
                    "fit": ["fit", "--levels", "2", "--codebook-size", "4", "--data", "d", "--out", "mm"],
                    "assign": ["assign", "--model", m, "--data", "d", "--registry", "r.sqlite"]}[command]
            add(Case("input", f"{command}: {label}", argv, setup=dataset_with_npy(writer),
                     check=absent("c.parquet", "mm", "r.sqlite")))
    bad_parquets = {
        "embedding column of strings": emb_table(embedding=pa.array([["a", "b"]] * 5)),
        "embedding column of plain strings": emb_table(embedding=pa.array(["1,2"] * 5)),
        "list with nulls": emb_table(embedding=pa.array([[1.0, None]] * 5)),
        "null rows": emb_table(embedding=pa.array([[1.0, 2.0], None, [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])),
        "ragged lists": emb_table(embedding=pa.array([[1.0, 2.0], [1.0], [1.0, 2.0], [1.0, 2.0], [1.0, 2.0]])),
        "string dimension columns": emb_table(a=pa.array(["1"] * 5), b=pa.array(["2"] * 5)),
        "list of lists": emb_table(embedding=pa.array([[[1.0]]] * 5)),
    }
    for label, table in bad_parquets.items():
        for command in ("encode", "diagnose", "fit", "assign"):
            argv = {"encode": ["encode", "--model", m, "--embeddings", "e.parquet", "--out", "c.parquet"],
                    "diagnose": ["diagnose", "--model", m, "--embeddings", "e.parquet"],
                    "fit": ["fit", "--levels", "1", "--codebook-size", "2", "--embeddings", "e.parquet", "--out", "mm"],
                    "assign": ["assign", "--model", m, "--embeddings", "e.parquet", "--registry", "r.sqlite"]}[command]
            add(Case("input", f"{command} parquet: {label}", argv,
                     setup=files_setup({"e.parquet": parquet_writer(table)}),
                     check=absent("c.parquet", "mm", "r.sqlite")))
    add(Case("input", "encode parquet: truncated file", ["encode", "--model", m, "--embeddings", "e.parquet", "--out",
             "c.parquet"], setup=lambda cwd: (cwd / "e.parquet").write_bytes(FX["emb.parquet"].read_bytes()[:3000])))
    # MovieLens sources
    def ml_with(name: str, text: str | bytes) -> Callable[[Path], None]:
        def setup(cwd: Path) -> None:
            copytree(FX["ml"], cwd / "src")
            path = cwd / "src" / name
            path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text, encoding="latin-1")
        return setup

    for label, (name, text) in {
        "u.data with letters": ("u.data", "1\t2\tfive\t880000000\n"),
        "u.data short rows": ("u.data", "1\t2\n3\t4\n"),
        "u.data empty": ("u.data", ""),
        "u.item short rows": ("u.item", "1|Movie\n"),
        "u.item non-integer id": ("u.item", "x|Movie (1995)|01-Jan-1995||url|" + "|".join(["0"] * 19) + "\n"),
        "u.user short rows": ("u.user", "1|30\n"),
        "u.user non-integer age": ("u.user", "1|old|M|other|12345\n"),
        "u.data binary junk": ("u.data", bytes(range(256)) * 4),
        "u.data unknown items": ("u.data", "1\t999\t4\t880000000\n"),
    }.items():
        add(Case("input", f"data fetch: {label}", ["data", "fetch", "movielens-100k", "--source", "src", "--out", "o"],
                 setup=ml_with(name, text), check=absent("o")))
    # timestamps
    ms = pa.array([880_000_000_000 + i for i in range(20)], pa.int64())
    add(Case("input", "data import: millisecond timestamps (ok, detected)", ["data", "import", "--items", "i.parquet",
             "--interactions", "t.parquet", "--out", "o"], expect="ok",
             setup=files_setup({"i.parquet": items_table, "t.parquet": interactions_table(ms)}),
             check=exists("o/items.parquet")))
    add(Case("input", "data import: nanosecond timestamps (ok, detected)", ["data", "import", "--items", "i.parquet",
             "--interactions", "t.parquet", "--out", "o"], expect="ok",
             setup=files_setup({"i.parquet": items_table, "t.parquet": interactions_table(
                 pa.array([880_000_000_000_000_000 + i for i in range(20)], pa.int64()))}),
             check=exists("o/items.parquet")))
    add(Case("input", "data import: huge float timestamps", ["data", "import", "--items", "i.parquet",
             "--interactions", "t.parquet", "--out", "o"],
             setup=files_setup({"i.parquet": items_table, "t.parquet": interactions_table(pa.array([1e30] * 20))}),
             check=absent("o")))
    add(Case("input", "data import: string timestamps", ["data", "import", "--items", "i.parquet",
             "--interactions", "t.parquet", "--out", "o"],
             setup=files_setup({"i.parquet": items_table,
                                "t.parquet": interactions_table(pa.array(["yesterday"] * 20))}),
             check=absent("o")))
    add(Case("input", "data import: arrow timestamp type (ok)", ["data", "import", "--items", "i.parquet",
             "--interactions", "t.parquet", "--out", "o"], expect="ok",
             setup=files_setup({"i.parquet": items_table, "t.parquet": interactions_table(
                 pa.array([880_000_000_000 + i for i in range(20)], pa.timestamp("ms")))}),
             check=exists("o/items.parquet")))
    add(Case("input", "data info: millisecond timestamps (ok)", ["data", "info", "o"], expect="ok",
             setup=lambda cwd: (files_setup({"i.parquet": items_table, "t.parquet": interactions_table(ms)})(cwd),
                                subprocess.run([SIDKIT, "data", "import", "--items", "i.parquet", "--interactions",
                                                "t.parquet", "--out", "o"], cwd=cwd, capture_output=True))))
    add(Case("input", "data import: item ids past int64", ["data", "import", "--items", "i.parquet",
             "--interactions", "t.parquet", "--out", "o"],
             setup=files_setup({"i.parquet": lambda p: pq.write_table(pa.table({
                 "item_id": pa.array([2**63 + i for i in range(5)], pa.uint64()), "text": ["a"] * 5}), p),
                 "t.parquet": interactions_table(ms)}), check=absent("o")))

    # 3. Corrupted models -------------------------------------------------------------------------
    enc = ["encode", "--model", "m", "--data", d, "--out", "c.parquet"]
    model_cases = {
        "NaN in weights": edit_weights(nan_weights),
        "inf in weights": edit_weights(inf_weights),
        "config with fewer levels than the weights": edit_config(fewer_levels),
        "config with more levels than the weights": edit_config(lambda c: (c["config"].update(levels=3),
                                                                          c.update(codebook_sizes=[8, 8, 8]))),
        "list as the class name": edit_config(lambda c: c.update(tokenizer=["RQKMeans"])),
        "unknown class": edit_config(lambda c: c.update(tokenizer="os.system")),
        "class of another kind (not a tokenizer)": edit_config(lambda c: c.update(tokenizer="Tokenizer")),
        "dim true": edit_config(lambda c: c.update(dim=True)),
        "dim negative": edit_config(lambda c: c.update(dim=-3)),
        "levels as string": edit_config(lambda c: c["config"].update(levels="2")),
        "config is a list": lambda m: (m / "config.json").write_text("[1, 2]"),
        "config not json": lambda m: (m / "config.json").write_text("{not json"),
        "config binary": lambda m: (m / "config.json").write_bytes(bytes(range(256))),
        "weights truncated": lambda m: (m / "weights.safetensors").write_bytes(
            (m / "weights.safetensors").read_bytes()[:100]),
        "weights empty": lambda m: (m / "weights.safetensors").write_bytes(b""),
        "weights missing": lambda m: (m / "weights.safetensors").unlink(),
        "weights a directory": lambda m: ((m / "weights.safetensors").unlink(), (m / "weights.safetensors").mkdir()),
        "weights of another model": lambda m: shutil.copy(FX["model4"] / "weights.safetensors",
                                                          m / "weights.safetensors"),
        "weights dtype int": edit_weights(lambda t: {k: v.to(torch.int32) for k, v in t.items()}),
        "extra tensor": edit_weights(lambda t: {**t, "codebook.2": torch.zeros(8, 16)}),
        "config weights shapes disagree": edit_config(lambda c: c.update(weights={"codebook.0": [4, 16]})),
        "config.json missing": lambda m: (m / "config.json").unlink(),
        "format_version huge": edit_config(lambda c: c.update(format_version=10**30)),
        "codebook sizes field disagrees": edit_config(lambda c: c.update(codebook_sizes=[4, 4])),
    }
    for label, mutate in model_cases.items():
        add(Case("model", f"encode: {label}", enc, setup=model_copy(mutate), check=absent("c.parquet")))
    for label in ("NaN in weights", "config with fewer levels than the weights", "list as the class name"):
        add(Case("model", f"diagnose: {label}", ["diagnose", "--model", "m", "--data", d],
                 setup=model_copy(model_cases[label])))
        add(Case("model", f"assign: {label}", ["assign", "--model", "m", "--data", d, "--registry", "r.sqlite"],
                 setup=model_copy(model_cases[label]), check=absent("r.sqlite")))
    def overflow_npy(cwd: Path) -> None:
        x = np.load(FX["emb.npy"]).astype(np.float32)
        x[5] *= 1e19
        x[9] *= 3e18
        np.save(cwd / "big.npy", x)
    add(Case("model", "fit: float32 input near overflow", ["fit", "--levels", "2", "--codebook-size", "4",
             "--embeddings", "big.npy", "--out", "mm"], setup=overflow_npy, check=absent("mm")))
    add(Case("model", "fit rq-vae: float32 input near overflow", ["fit", "--method", "rq-vae", "--epochs", "1",
             "--levels", "2", "--codebook-size", "4", "--embeddings", "big.npy", "--out", "mm"], setup=overflow_npy,
             check=absent("mm")))

    # 4. Options ----------------------------------------------------------------------------------
    fit = ["fit", "--data", d, "--out", "mm"]
    add(Case("options", "fit: latent size huge (says memory)", [*fit, "--method", "rq-vae", "--latent-dim",
             str(10**12), "--epochs", "1"], check=stderr_mentions("memory")))
    for label, extra in {
        "negative seed": ["--seed", "-1"],
        "seed above 2^64": ["--seed", str(2**64 + 5)],
        "seed 2^40": ["--seed", str(2**40)],
        "levels huge": ["--levels", "1000000"],
        "levels past int64": ["--levels", str(2**70)],
        "levels 0": ["--levels", "0"],
        "codebook size 0": ["--codebook-size", "0"],
        "codebook size 1": ["--codebook-size", "1"],
        "codebook size past int64": ["--codebook-size", str(2**70)],
        "latent size huge": ["--method", "rq-vae", "--latent-dim", str(10**12), "--epochs", "1"],
        "latent size past int64": ["--method", "rq-vae", "--latent-dim", str(2**70), "--epochs", "1"],
        "epochs 0": ["--method", "rq-vae", "--epochs", "0"],
        "batch size 0": ["--method", "rq-vae", "--batch-size", "0"],
        "fit sample 0": ["--fit-sample", "0"],
        "device mps": ["--device", "mps"],
        "device cuda:7": ["--device", "cuda:7"],
        "device nonsense": ["--device", "gpu!"],
        "unknown option": ["--frobnicate"],
        "precision bogus": ["--method", "rq-vae", "--precision", "float8"],
    }.items():
        add(Case("options", f"fit: {label}", fit + extra, check=absent("mm")))
    add(Case("options", "encode: device mps", ["encode", "--model", m, "--data", d, "--out", "c.parquet", "--device",
             "mps"], check=absent("c.parquet")))
    add(Case("options", "encode: chunk rows 0", ["encode", "--model", m, "--data", d, "--out", "c.parquet",
             "--chunk-rows", "0"], check=absent("c.parquet")))
    add(Case("options", "encode: chunk rows past int64", ["encode", "--model", m, "--data", d, "--out", "c.parquet",
             "--chunk-rows", str(2**70)], check=absent("c.parquet")))
    add(Case("options", "diagnose: device mps", ["diagnose", "--model", m, "--data", d, "--device", "mps"]))
    cmp = ["compare", "--data", d, "--methods", "rq-kmeans", "--levels", "2", "--codebook-size", "4",
           "--no-stability", "--no-report", "--out", "cmp"]
    for label, extra in {
        "rho inf": ["--rho", "inf"], "rho negative": ["--rho", "-0.1"], "rho nan": ["--rho", "nan"],
        "rho text": ["--rho", "abc"], "rho zero": ["--rho", "0"],
        "reference rho inf": ["--reference-rho", "inf"],
        "samples 0": ["--samples", "0"], "samples negative": ["--samples", "-3"],
        "codebook size 1": ["--codebook-size", "1"], "negative seed": ["--seed", "-1"],
        "device mps": ["--device", "mps"], "epochs 0": ["--epochs", "0"],
        "levels 0": ["--levels", "0"], "methods bogus": ["--methods", "bogus"],
    }.items():
        add(Case("options", f"compare: {label}", cmp + extra,
                 check=stderr_mentions("--rho") if label == "rho inf" else absent("cmp")))
    rnk = ["rank", "--data", d, "--features", "hash", "--seeds", "1", "--epochs", "1", "--no-report", "--out", "rk"]
    for label, extra in {"history 0": ["--history", "0"], "history negative": ["--history", "-1"],
                         "seeds 0": ["--seeds", "0"], "negatives 0": ["--negatives", "0"],
                         "device mps": ["--device", "mps"], "batch size 0": ["--batch-size", "0"],
                         "learning rate nan": ["--learning-rate", "nan"], "item holdout 2": ["--item-holdout", "2"],
                         "features bogus": ["--features", "bogus"], "split bogus": ["--split", "bogus"]}.items():
        add(Case("options", f"rank: {label}", rnk + extra, check=absent("rk")))
    ret = ["retrieve", "--data", d, "--models", "popularity", "--seeds", "1", "--no-report", "--out", "rt"]
    for label, extra in {"history 0": ["--history", "0"], "history negative": ["--history", "-1"],
                         "seeds 0": ["--seeds", "0"], "k 0": ["--k", "0"], "k text": ["--k", "ten"],
                         "beam below k": ["--models", "tiger", "--beam", "3"], "models bogus": ["--models", "bogus"],
                         "device mps": ["--device", "mps"], "item holdout 2": ["--item-holdout", "2"],
                         "split bogus": ["--split", "bogus"], "tokenizers bogus": ["--tokenizers", "bogus"],
                         "tiger without SIDs": ["--models", "tiger"], "levels 0": ["--levels", "0"]}.items():
        add(Case("options", f"retrieve: {label}", ret + extra, check=absent("rt")))
    for label, extra in {"items 0": ["--items", "0"], "dim 0": ["--dim", "0"], "negative seed": ["--seed", "-1"],
                         "items huge": ["--items", str(10**15)]}.items():
        add(Case("options", f"data synth: {label}", ["data", "synth", "--out", "s", *extra], check=absent("s")))
    add(Case("options", "lookup: id past int64", ["lookup", "--registry", str(FX["reg.sqlite"]), str(2**63)]))
    add(Case("options", "lookup: id far past int64", ["lookup", "--registry", str(FX["reg.sqlite"]), "9" * 40]))
    add(Case("options", "lookup: non-numeric id in an int registry", ["lookup", "--registry", str(FX["reg.sqlite"]),
             "abc"]))
    add(Case("options", "assign: chunk rows 0", ["assign", "--model", m, "--data", d, "--registry", "r.sqlite",
             "--chunk-rows", "0"], check=absent("r.sqlite")))
    add(Case("options", "embed: device mps", ["embed", "--data", "d", "--device", "mps"],
             setup=lambda cwd: copytree(FX["data"], cwd / "d")))

    # 5. Registries -------------------------------------------------------------------------------
    asg = ["assign", "--model", m, "--data", d, "--registry"]
    for name in ("r.sqlite?mode=memory", "r#1.sqlite", "r%41.sqlite", "file:r.sqlite"):
        add(Case("registry", f"assign: path {name!r} is a plain file path (ok)", [*asg, name], expect="ok",
                 check=registry_rows(name, 1100)))
    add(Case("registry", "assign: into a foreign SQLite file", [*asg, "f.sqlite"],
             setup=lambda cwd: foreign_sqlite(cwd / "f.sqlite"),
             check=lambda cwd: None if [r[0] for r in sqlite3.connect(cwd / "f.sqlite").execute(
                 "SELECT name FROM sqlite_master")] == ["customers"] else "the foreign file was changed"))
    add(Case("registry", "lookup: a foreign SQLite file", ["lookup", "--registry", "f.sqlite", "1"],
             setup=lambda cwd: foreign_sqlite(cwd / "f.sqlite")))
    add(Case("registry", "assign: into a text file", [*asg, "t.sqlite"],
             setup=lambda cwd: (cwd / "t.sqlite").write_text("hello")))
    add(Case("registry", "assign: item ids >= 2^63", ["assign", "--model", m, "--embeddings", "e.parquet", "--registry",
             "r.sqlite"], setup=files_setup({"e.parquet": parquet_writer(lambda: pa.table({
                 "item_id": pa.array([2**63 + i for i in range(20)], pa.uint64()),
                 "embedding": list(np.load(FX["emb.npy"])[:20])}))}), check=absent("r.sqlite")))
    reg_cases = {
        "items table missing": sql("DROP TABLE items"),
        "meta table missing": sql("DROP TABLE meta"),
        "non-integer version": sql("UPDATE meta SET value='one' WHERE key='format_version'"),
        "bad sizes metadata": sql("UPDATE meta SET value='[8, ' WHERE key='sizes'"),
        "sizes not a list": sql("UPDATE meta SET value='8' WHERE key='sizes'"),
        "bad id kind": sql("UPDATE meta SET value='float' WHERE key='id_kind'"),
        "corrupted pages": corrupt_pages,
        "truncated file": lambda p: p.write_bytes(p.read_bytes()[:5000]),
        "level column missing": sql("ALTER TABLE items RENAME COLUMN level_1 TO other"),
        "newer format": sql("UPDATE meta SET value='99' WHERE key='format_version'"),
    }
    for label, mutate in reg_cases.items():
        add(Case("registry", f"lookup: {label}", ["lookup", "--registry", "r.sqlite", "1"],
                 setup=registry_copy(mutate)))
        add(Case("registry", f"assign: {label}", [*asg, "r.sqlite"], setup=registry_copy(mutate)))
    add(Case("registry", "lookup: registry on read-only media (ok)", ["lookup", "--registry", "ro/r.sqlite", "1"],
             expect="ok", setup=lambda cwd: tmpfs(cwd / "ro", readonly=True,
                                                   fill=lambda p: shutil.copy(FX["reg.sqlite"], p / "r.sqlite"))))
    add(Case("registry", "lookup: read-only registry file in a read-only folder as a user (ok)",
             ["lookup", "--registry", "locked/r.sqlite", "1"], expect="ok", user=True,
             setup=lambda cwd: ((cwd / "locked").mkdir(), shutil.copy(FX["reg.sqlite"], cwd / "locked" / "r.sqlite"),
                                os.chmod(cwd / "locked" / "r.sqlite", 0o444), os.chmod(cwd / "locked", 0o555),
                                os.chmod(cwd, 0o777))))
    add(Case("registry", "assign: missing folder (ok: created, as for every output)", [*asg, "nowhere/r.sqlite"],
             expect="ok", check=registry_rows("nowhere/r.sqlite", 1100)))
    add(Case("registry", "assign: read-only folder (says read-only)", [*asg, "ro/r.sqlite"],
             setup=lambda cwd: tmpfs(cwd / "ro", readonly=True), check=stderr_mentions("read-only")))
    add(Case("registry", "assign: existing registry on read-only media (says read-only)", [*asg, "ro/r.sqlite"],
             setup=lambda cwd: tmpfs(cwd / "ro", readonly=True,
                                     fill=lambda p: shutil.copy(FX["reg.sqlite"], p / "r.sqlite")),
             check=stderr_mentions("read-only")))
    add(Case("registry", "assign: folder without write permission (says permission)", [*asg, "locked/r.sqlite"],
             user=True, setup=perm_dir, check=stderr_mentions("permission")))
    add(Case("registry", "assign: full disk (says no space)", [*asg, "full/r.sqlite"],
             setup=lambda cwd: full_disk(cwd / "full"), check=stderr_mentions("space")))
    add(Case("registry", "lookup: missing registry", ["lookup", "--registry", "nope.sqlite", "1"]))
    add(Case("registry", "lookup: registry is a directory", ["lookup", "--registry", "dir.sqlite", "1"],
             setup=lambda cwd: (cwd / "dir.sqlite").mkdir()))
    add(Case("registry", "assign: registry is a directory", [*asg, "dir.sqlite"],
             setup=lambda cwd: (cwd / "dir.sqlite").mkdir()))
    add(Case("registry", "assign: registry of another model", ["assign", "--model", m4, "--data", d, "--registry",
             "r.sqlite"], setup=registry_copy()))
    return out


def crash_cases() -> list[Case]:
    _d, _m = str(FX["data"]), str(FX["model"])
    return [
        Case("crash", "kill -9 at each rename of fit over an existing model dir", ["fit"], subprocess=True),
        Case("crash", "kill -9 at each rename of compare over an earlier run", ["compare"], subprocess=True),
        Case("crash", "kill -9 during encode, then re-run: no stale temp files", ["encode"], subprocess=True),
        Case("crash", "Ctrl-C during encode: one line, no partial output", ["sigint"], subprocess=True),
        Case("crash", "kill -9 at each rename of data synth over an existing dataset", ["synth"], subprocess=True),
        Case("crash", "kill -9 at each rename of rank over an earlier run", ["rank"], subprocess=True),
        Case("crash", "kill -9 at each rename of retrieve over an earlier run", ["retrieve"], subprocess=True),
    ]


# ---------------------------------------------------------------- running


def run_forked(case: Case, cwd: Path) -> Outcome:
    out_path, err_path = cwd.parent / f"{cwd.name}.stdout", cwd.parent / f"{cwd.name}.stderr"
    pid = os.fork()
    if pid == 0:
        try:
            os.chdir(cwd)
            if case.user and os.geteuid() == 0:  # permissions bind only a user who is not root
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            fd_out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            fd_err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
            os.dup2(fd_out, 1)
            os.dup2(fd_err, 2)
            sys.stdout = os.fdopen(1, "w", buffering=1)
            sys.stderr = os.fdopen(2, "w", buffering=1)
            os.environ["COLUMNS"] = "300"
            signal.alarm(300)
            try:
                rc = sidkit_main(case.argv)
            except SystemExit as exc:
                rc = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # what Python would print at the top level
                import traceback

                traceback.print_exc()
                rc = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(rc if isinstance(rc, int) else 0)
        except BaseException:
            import traceback

            traceback.print_exc()
            os._exit(99)
    _, status = os.waitpid(pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    return Outcome(case, rc, err_path.read_text(errors="replace"), out_path.read_text(errors="replace"))


def wait_for(path_test: Callable[[], bool], timeout: float) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if path_test():
            return True
        time.sleep(0.05)
    return False


def run_crash(case: Case, cwd: Path) -> Outcome:
    """Kills and interrupts: real processes, killed at a chosen moment."""
    _d, m = str(FX["data"]), str(FX["model"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    kind = case.argv[0]
    if kind in ("fit", "compare", "rank", "synth", "retrieve"):
        return run_kill_sweep(case, cwd, kind)
    if kind == "encode":
        big = np.random.default_rng(0).normal(size=(3_000_000, 16)).astype(np.float32)
        np.save(cwd / "big.npy", big)
        proc = subprocess.Popen([SIDKIT, "encode", "--model", m, "--embeddings", "big.npy", "--out", "c.parquet",
                                 "--chunk-rows", "20000"], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        wait_for(lambda: any(p.name.endswith(".tmp") for p in cwd.iterdir()), 60)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = [p.name for p in cwd.iterdir() if p.name.endswith(".tmp")]
        subprocess.run([SIDKIT, "encode", "--model", m, "--embeddings", "big.npy", "--out", "c.parquet"], cwd=cwd,
                       env=env, capture_output=True)
        after = [p.name for p in cwd.iterdir() if p.name.endswith(".tmp")]
        problem = f"temp files after the re-run: {after} (left by the kill: {left})" if after else None
        if not left:
            problem = (problem or "") + " (the kill left no temp file: killed too early or too late?)"
        return Outcome(case, 0, "", "", problem=problem)
    if kind == "sigint":
        big = np.random.default_rng(0).normal(size=(3_000_000, 16)).astype(np.float32)
        np.save(cwd / "big.npy", big)
        proc = subprocess.Popen([SIDKIT, "encode", "--model", m, "--embeddings", "big.npy", "--out", "c.parquet",
                                 "--chunk-rows", "5000"], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        wait_for(lambda: any(p.name.endswith(".tmp") for p in cwd.iterdir()), 60)
        proc.send_signal(signal.SIGINT)  # as soon as the output is being written
        _, err = proc.communicate()
        lines = [line for line in err.splitlines() if line.strip()]
        problems = []
        if proc.returncode == 0:
            return Outcome(case, 0, err, "", problem="the encode finished before the interrupt arrived")
        if proc.returncode != 130:
            problems.append(f"exit {proc.returncode}")
        if len(lines) != 1 or "interrupt" not in err.lower():
            problems.append(f"stderr: {err[-400:]!r}")
        if "Traceback" in err:
            problems.append("traceback")
        left = sorted(p.name for p in cwd.iterdir() if p.name != "big.npy")
        if left:
            problems.append(f"left {left}")
        return Outcome(case, proc.returncode, err, "", problem="; ".join(problems) or None)
    raise ValueError(kind)


def tree_digest(root: Path) -> dict[str, str]:
    import hashlib

    if not root.exists():
        return {}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def kill_at(target: int, argv: list[str]) -> int:
    """Run the CLI in this process and SIGKILL it at the ``target``-th file rename (os.replace,
    os.rename, or the exchange of two directories); 0: never. Prints the number of renames."""
    import sidkit.io as sio

    calls = [0]

    def counting(fn: Callable) -> Callable:
        def wrapped(*args: object, **kwargs: object) -> object:
            calls[0] += 1
            if calls[0] == target:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return wrapped

    os.replace = counting(os.replace)  # type: ignore[assignment]
    os.rename = counting(os.rename)  # type: ignore[assignment]
    sio.exchange_paths = counting(sio.exchange_paths)  # type: ignore[assignment]
    rc = sidkit_main(argv)
    print(f"RENAMES {calls[0]}", file=sys.stderr)
    return rc


def killat_command(n: int, argv: list[str]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--kill-at", str(n), "--", *argv]


def run_kill_sweep(case: Case, cwd: Path, kind: str) -> Outcome:
    """Kill -9 at every file rename of a run over an earlier output; after each kill the output must be
    the old one or the new one, whole; then a clean run must complete and leave no temp files."""
    d = str(FX["data"])
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kind == "fit":
        old = ["fit", "--levels", "2", "--codebook-size", "8", "--data", d, "--out", "o"]
        new = ["fit", "--levels", "3", "--codebook-size", "4", "--data", d, "--out", "o", "--overwrite"]
    elif kind == "compare":
        base = ["compare", "--data", d, "--methods", "rq-kmeans", "--levels", "2", "--no-stability", "--samples", "3",
                "--rho", "0.1", "--out", "o"]
        old, new = [*base, "--codebook-size", "4"], [*base, "--codebook-size", "8", "--overwrite"]
    elif kind == "rank":
        base = ["rank", "--data", d, "--features", "hash", "--epochs", "1", "--no-report", "--out", "o"]
        old, new = [*base, "--seeds", "1"], [*base, "--seeds", "2", "--overwrite"]
    elif kind == "retrieve":
        base = ["retrieve", "--data", d, "--models", "popularity", "--out", "o"]
        old, new = [*base, "--seeds", "1", "--no-report"], [*base, "--seeds", "2", "--overwrite"]
    else:
        base = ["data", "synth", "--items", "1100", "--users", "20", "--interactions", "500", "--dim", "8",
                "--overwrite", "--out", "o"]
        old, new = [*base, "--seed", "1"], [*base, "--seed", "2"]
    subprocess.run([SIDKIT, *old], cwd=cwd, env=env, capture_output=True, check=True)
    old_tree = tree_digest(cwd / "o")
    shutil.copytree(cwd / "o", cwd / "o_old_copy")
    probe = subprocess.run(killat_command(0, new), cwd=cwd, env=env, capture_output=True, text=True)
    if probe.returncode != 0:
        return Outcome(case, 0, "", "", problem=f"the new run fails: {probe.stderr[-300:]}")
    renames = int(probe.stderr.rsplit("RENAMES", 1)[1].split()[0])
    new_tree = tree_digest(cwd / "o")
    shutil.rmtree(cwd / "o")
    shutil.copytree(cwd / "o_old_copy", cwd / "o")

    def same_files(a: dict[str, str], b: dict[str, str]) -> bool:
        volatile = ("metrics.json", "summary.md", "report.html", "manifest.json", "history.json", "runs.jsonl")
        return set(a) == set(b) and all(a[k] == b[k] for k in a if not k.endswith(volatile))

    problems = []
    for n in range(1, renames + 1):
        proc = subprocess.run(killat_command(n, new), cwd=cwd, env=env, capture_output=True, text=True)
        now = tree_digest(cwd / "o")
        state = "old" if now == old_tree else "new" if same_files(now, new_tree) else "MIXED"
        if state == "MIXED":
            gone = sorted(set(old_tree) - set(now))[:4]
            added = sorted(set(now) - set(old_tree))[:4]
            changed = sorted(k for k in now if k in old_tree and now[k] != old_tree[k])[:4]
            problems.append(f"kill at rename {n}/{renames} (rc {proc.returncode}): mixed: -{gone} +{added} ~{changed}")
        if state != "old":  # put the old one back for the next kill
            shutil.rmtree(cwd / "o", ignore_errors=True)
            shutil.copytree(cwd / "o_old_copy", cwd / "o")
    shutil.rmtree(cwd / "o_old_copy")
    rerun = subprocess.run([SIDKIT, *new], cwd=cwd, env=env, capture_output=True, text=True)
    if rerun.returncode != 0:
        problems.append(f"clean re-run failed: {rerun.stderr.strip()[-200:]}")
    temps = no_temp_files(cwd)
    if temps:
        problems.append(temps)
    return Outcome(case, 0, "", "", problem=f"{len(problems)} of {renames} kills: " + "; ".join(problems)[:600]
                   if problems else None, extra={"renames": renames})


def judge(outcome: Outcome) -> None:
    case, err = outcome.case, outcome.stderr
    lines = [line for line in err.splitlines() if line.strip()]
    if case.subprocess:
        outcome.verdict = "PASS" if outcome.problem is None else "FAIL:" + outcome.problem
        return
    problem = None
    if "Traceback" in err:
        problem = f"traceback ({lines[-1][:160] if lines else ''})"
    elif outcome.rc < 0:
        problem = f"killed by signal {-outcome.rc}"
    elif case.expect == "error":
        if outcome.rc == 0:
            problem = "exit 0 (expected an error)"
        elif outcome.rc != 2:
            problem = f"exit {outcome.rc}: {' | '.join(lines)[:200]}"
        elif len(lines) != 1:
            problem = f"{len(lines)} lines: {' | '.join(lines)[:200]}"
        elif not lines[0].startswith("error:"):
            problem = f"not an error line: {lines[0][:200]}"
        elif "Fix:" not in lines[0]:
            problem = f"no Fix: part: {lines[0][:200]}"
        elif outcome.extra.get("changed"):
            problem = f"partial output: {outcome.extra['changed']}"
    else:
        if outcome.rc != 0:
            problem = f"exit {outcome.rc}: {' | '.join(lines)[-300:]}"
    if problem is None and case.check is not None:
        words = getattr(case.check, "words", None)
        if words:
            missing = [w for w in words if w.lower() not in err.lower()]
            problem = f"message lacks {missing}: {err.strip()[:200]}" if missing else None
        else:
            problem = outcome.extra.get("check")
    outcome.problem = problem
    outcome.verdict = "PASS" if problem is None else "FAIL:" + problem


def changes(before: dict[str, str], after: dict[str, str]) -> str | None:
    """What a failed command added, removed or changed under its working directory."""
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in before if k in after and before[k] != after[k])
    if not (added or removed or changed):
        return None
    return "; ".join(f"{label} {names[:4]}" for label, names in (("added", added), ("removed", removed),
                                                                  ("changed", changed)) if names)


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with a digest of its contents (directories too, so that an empty
    folder left behind counts)."""
    import hashlib

    found: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink() or not path.is_file():
            found[key] = "dir" if path.is_dir() else "other"
        else:
            try:
                found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
            except OSError:
                found[key] = "unreadable"
    return found


def main() -> None:
    global ROOT
    if len(sys.argv) > 1 and sys.argv[1] == "--kill-at":  # a child of the crash cases
        sys.exit(kill_at(int(sys.argv[2]), sys.argv[4:]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=None, help="a category, or a substring of case names")
    parser.add_argument("--no-crash", action="store_true", help="leave out the kill/interrupt cases (slow)")
    parser.add_argument("--work", default=None, help="working directory (default: a new temporary one, removed)")
    parser.add_argument("--json", default=None, help="also write every verdict to this JSON file")
    args = parser.parse_args()
    import tempfile

    ROOT = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="sidkit-fuzz-"))
    ROOT.mkdir(parents=True, exist_ok=True)
    os.chmod(ROOT, 0o777)
    FX.update(build_fixtures(ROOT))
    os.chmod(ROOT / "fixtures", 0o755)
    for p in (ROOT / "fixtures").rglob("*"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    selected = cases() + ([] if args.no_crash else crash_cases())
    if args.only:
        selected = [c for c in selected if c.category == args.only or args.only in c.name]
    work = ROOT / "cases"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    os.chmod(work, 0o777)
    results: list[Outcome] = []
    started_all = time.time()
    try:
        for number, case in enumerate(selected):
            cwd = work / f"{number:03d}"
            cwd.mkdir()
            try:
                if case.setup:
                    case.setup(cwd)
                started = time.time()
                if case.subprocess:
                    outcome = run_crash(case, cwd)
                else:
                    before = snapshot(cwd) if case.expect == "error" else {}
                    outcome = run_forked(case, cwd)
                    if case.expect == "error":
                        outcome.extra["changed"] = changes(before, snapshot(cwd))
                    if case.check is not None and not getattr(case.check, "words", None):
                        outcome.extra["check"] = case.check(cwd)
                outcome.extra["seconds"] = round(time.time() - started, 1)
            except Skip as why:
                outcome = Outcome(case, 0, "", "", verdict=f"SKIP:{why}")
            except Exception as error:
                outcome = Outcome(case, -999, f"HARNESS: {type(error).__name__}: {error}", "")
                outcome.problem = "harness"
                outcome.verdict = f"FAIL:harness {type(error).__name__}: {error}"
            else:
                judge(outcome)
            finally:
                unmount_all()
            results.append(outcome)
            print(f"{number:03d} [{case.category}] {case.name}: {outcome.verdict[:300]}", flush=True)
    finally:
        unmount_all()
        if not args.work:
            shutil.rmtree(ROOT, ignore_errors=True)
    kinds = Counter((o.case.category, o.verdict.split(":")[0]) for o in results)
    print(f"\n=== totals ({time.time() - started_all:.0f} s) ===")
    for category in dict.fromkeys(o.case.category for o in results):
        print(f"{category:10s} {kinds[(category, 'PASS')]:4d} held {kinds[(category, 'FAIL')]:4d} failed "
              f"{kinds[(category, 'SKIP')]:4d} skipped")
    held = sum(o.verdict == "PASS" for o in results)
    failed = sum(o.verdict.startswith("FAIL") for o in results)
    print(f"{'all':10s} {held:4d} held {failed:4d} failed {len(results) - held - failed:4d} skipped "
          f"({len(results)} cases)")
    if args.json:
        Path(args.json).write_text(json.dumps([{"category": o.case.category, "name": o.case.name,
                                                "verdict": o.verdict, "rc": o.rc, "stderr": o.stderr[-2000:],
                                                "seconds": o.extra.get("seconds")} for o in results], indent=1))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
