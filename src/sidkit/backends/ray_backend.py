"""Encode and diagnose on Ray Data: the same codes and metrics as the local streaming path, on a cluster.

    input  --read-->  blocks  --map_batches(TokenizerActor)-->  codes   --write_parquet-->  DIR/*.parquet
                                                            \\->  partial usage / reconstruction  --merge-->  report

- Input: a parquet file or directory (``ray.data.read_parquet``: a list column ``embedding`` or one
  float column per dimension, optional ``item_id``); or a ``.npy`` file / dataset directory, read as
  row ranges by the actors themselves (every node must see the path, e.g. a shared file system).
- Each actor loads the tokenizer once (``load_tokenizer``) and encodes whole batches.
- Metrics go through mergeable partials (:mod:`sidkit.stream.metrics`): each batch returns its code
  counts and error sums, and the driver merges them; usage equals the local report exactly.
- Output of encode: a directory of parquet files with ``level_*`` and ``sid`` columns, plus
  ``item_id`` when the input has ids and ``row`` (the item's row in the input) for ``.npy`` inputs.
  It is written to a temporary directory beside the target and renamed when complete.

Ray is imported only when used: without it, a :class:`ConfigError` says how to install it. By
default a local Ray instance is started (and stopped afterwards); ``address`` joins a cluster
(``"auto"``, or ``"ray://head:10001"``).
"""

from __future__ import annotations

import base64
import contextlib
import gc
import importlib
import json
import logging
import math
import os
import pickle
import re
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from sidkit import errors
from sidkit.diagnostics.basic import BasicDiagnostics
from sidkit.errors import ConfigError, DataError, SidkitError, innermost_sidkit_error
from sidkit.io import atomic_dir
from sidkit.progress import progress_enabled
from sidkit.stream.metrics import ReconstructionPartial, UsagePartial, merge_reconstruction, merge_usage
from sidkit.stream.source import (
    ITEM_ID,
    DatasetSource,
    EmbeddingSource,
    NpySource,
    ParquetSource,
    open_dataset_embeddings,
    open_embeddings,
    table_embeddings,
)
from sidkit.stream.writers import codes_table

T = TypeVar("T")

DEFAULT_BATCH_ROWS = 65_536
ROW = "row"


def require_ray() -> ModuleType:
    """The ``ray`` module with Ray Data, or a ConfigError that says how to install it."""
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError as error:
        raise ConfigError(f"the Ray backend needs Ray Data, which is not installed ({error})",
                          where="--backend ray",
                          fix="pip install 'sidkit[ray]' (or 'ray[data]'), or use --backend local") from None
    return ray


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run.

    Attributes:
        address: None starts a local Ray instance (stopped afterwards); ``"auto"`` or
            ``"ray://host:10001"`` joins a running cluster (left running).
        num_cpus: CPUs of the local instance (None: all); ignored with ``address``.
        actors: tokenizer actors (None: one per ``cpus_per_actor`` CPUs of the cluster).
        cpus_per_actor: CPUs each actor reserves, and its torch threads.
        batch_rows: rows per ``map_batches`` call.
        device: torch device of the actors (``cuda`` reserves one GPU per actor).
    """

    address: str | None = None
    num_cpus: int | None = None
    actors: int | None = None
    cpus_per_actor: int = 1
    batch_rows: int = DEFAULT_BATCH_ROWS
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("cpus_per_actor", "batch_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}", where=name)
        for name in ("num_cpus", "actors"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {value!r}", where=name)


@dataclass(frozen=True)
class RayEncodeResult:
    """What :func:`ray_encode` wrote: ``num_items`` rows of codes into the parquet directory ``path``."""

    path: Path
    num_items: int
    levels: int
    seconds: float


@contextlib.contextmanager
def ray_session(options: RayOptions) -> Iterator[ModuleType]:
    """Ray, initialized: a local instance that is shut down afterwards, or the cluster at ``address``."""
    ray = require_ray()
    # Ray Data logs every operator's progress at INFO; sidkit reports its own summary instead.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = progress_enabled()
    if ray.is_initialized():
        with _plain_errors():
            yield ray
        return
    if options.address is not None:
        ray.init(address=options.address, log_to_driver=False, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=options.num_cpus, include_dashboard=False, log_to_driver=False,
                 logging_level=logging.WARNING)
    try:
        with _plain_errors():
            yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _plain_errors() -> Iterator[None]:
    """A sidkit error raised in a Ray task reaches the driver wrapped, with the task's traceback in its
    text (Ray Data keeps only text of the original); raise the original, one-line error instead."""
    try:
        yield
    except Exception as error:
        original = _carried(error) or innermost_sidkit_error(error)
        if original is None or original is error:
            raise
        raise original from None


_CARRIED = re.compile(r"sidkit-error:([A-Za-z0-9+/=]+)")


def _carry(error: SidkitError) -> RuntimeError:
    """``error`` as text that survives Ray's wrapping (class, problem, where and fix, base64 JSON)."""
    parts = {"kind": type(error).__name__, "problem": error.problem, "where": error.where, "fix": error.fix}
    payload = base64.b64encode(json.dumps(parts).encode("utf-8")).decode("ascii")
    return RuntimeError(f"{error} [sidkit-error:{payload}]")


def _carried(error: BaseException) -> SidkitError | None:
    """The sidkit error that :func:`_carry` put into the text of ``error`` (or of what it wraps), if any."""
    match = _CARRIED.search(str(error))
    if match is None:
        return None
    try:
        parts = json.loads(base64.b64decode(match.group(1)).decode("utf-8"))
    except ValueError:
        return None
    kind = getattr(errors, str(parts.get("kind")), None)  # only sidkit's own classes, by name
    cls = kind if isinstance(kind, type) and issubclass(kind, SidkitError) else SidkitError
    return cls(str(parts.get("problem")), where=parts.get("where"), fix=parts.get("fix"))


class TokenizerActor:
    """A Ray actor holding one loaded tokenizer; called with a batch, returns codes or metric partials.

    Args:
        model_dir: the saved tokenizer (a path every node can read).
        device: torch device.
        threads: torch CPU threads (the CPUs the actor reserved).
        output: ``"codes"`` (a codes table) or ``"partials"`` (one row of pickled metric partials).
        reader: how a batch becomes embeddings: ``("parquet", list_column, columns, dim)`` for
            parquet blocks, ``("npy", path, items_path)`` for row ranges of a ``.npy`` file.
    """

    def __init__(self, model_dir: str, device: str, threads: int, output: str, reader: tuple[Any, ...]) -> None:
        import torch

        from sidkit.tokenizers.base import load_tokenizer

        torch.set_num_threads(threads)
        try:
            self.tokenizer = load_tokenizer(model_dir, device=device)
        except SidkitError as error:
            raise _carry(error) from None
        self.output = output
        self.reader = reader

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            return self._process(batch)
        except SidkitError as error:  # bad data in this batch: the driver shows it as one line
            raise _carry(error) from None

    def _process(self, batch: pa.Table) -> pa.Table:
        embeddings, item_ids, rows = self._read(batch)
        ids = self.tokenizer.encode(embeddings, batch_size=max(1, len(embeddings)))
        if self.output == "codes":
            table = codes_table(ids.codes, ids.sizes, item_ids)
            return table.add_column(0, ROW, pa.array(rows, pa.int64())) if rows is not None else table
        usage = UsagePartial.from_codes(ids)
        recon = ReconstructionPartial.from_rows(embeddings, self.tokenizer.decode(ids))
        return pa.table({"partial": pa.array([pickle.dumps((usage, recon))], pa.binary())})

    def _read(self, batch: pa.Table) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        if self.reader[0] == "parquet":
            _, list_column, columns, dim = self.reader
            embeddings = table_embeddings(batch, list_column, columns, dim, where="ray batch")
            ids = batch.column(ITEM_ID).to_numpy(zero_copy_only=False) if ITEM_ID in batch.column_names else None
            return embeddings, ids, None
        _, path, items = self.reader
        source = NpySource(Path(path))
        starts = batch.column("start").to_numpy()
        stops = batch.column("stop").to_numpy()
        parts = [source.read(int(a), int(b)) for a, b in zip(starts, stops, strict=True)]
        rows = np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in zip(starts, stops, strict=True)])
        ids = None
        if items is not None:
            import pyarrow.dataset as pads

            table = pads.dataset(items, format="parquet").take(pa.array(rows), columns=[ITEM_ID])
            ids = table.column(ITEM_ID).to_numpy(zero_copy_only=False)
        return np.concatenate(parts), ids, rows


def ray_encode(model_dir: str | os.PathLike[str], data: str | os.PathLike[str], out: str | os.PathLike[str],
               options: RayOptions | None = None) -> RayEncodeResult:
    """Encode every row of ``data`` (see the module docstring) on Ray; write the codes under directory ``out``."""
    options = options or RayOptions()
    return _releasing(lambda: _ray_encode(model_dir, data, Path(out), options))


def _ray_encode(model_dir: str | os.PathLike[str], data: str | os.PathLike[str], target: Path,
                options: RayOptions) -> RayEncodeResult:
    started = time.perf_counter()
    with ray_session(options) as ray:
        dataset, reader, source = _dataset(ray, data, options)
        levels = _levels(model_dir)
        codes = _map(dataset, model_dir, reader, "codes", options, ray, source.num_rows)
        with atomic_dir(target, replaceable=_is_codes_dir, what="directory of codes",
                        fix="pass a new directory, or one that `sidkit encode --backend ray` wrote") as scratch:
            codes.write_parquet(str(scratch), ray_remote_args={"num_cpus": 0})
            written = sum(_parquet_rows(path) for path in scratch.glob("*.parquet"))
            if written != source.num_rows:
                raise DataError(f"Ray wrote {written} rows of codes for {source.num_rows} inputs", where=str(target),
                                fix="run again; if it repeats, check the cluster's logs")
    return RayEncodeResult(target, source.num_rows, levels, time.perf_counter() - started)


def ray_diagnose(model_dir: str | os.PathLike[str], data: str | os.PathLike[str],
                 options: RayOptions | None = None) -> BasicDiagnostics:
    """Usage and reconstruction of the tokenizer in ``model_dir`` over ``data``, computed on Ray."""
    options = options or RayOptions()
    return _releasing(lambda: _ray_diagnose(model_dir, data, options))


def _ray_diagnose(model_dir: str | os.PathLike[str], data: str | os.PathLike[str],
                  options: RayOptions) -> BasicDiagnostics:
    with ray_session(options) as ray:
        dataset, reader, source = _dataset(ray, data, options)
        partials = _map(dataset, model_dir, reader, "partials", options, ray, source.num_rows)
        usage, recon = [], []
        for batch in partials.iter_batches(batch_format="pyarrow", batch_size=None):
            for blob in batch.column("partial").to_pylist():
                one_usage, one_recon = pickle.loads(blob)
                usage.append(one_usage)
                recon.append(one_recon)
    if not usage:
        raise DataError("Ray returned no partial results", where=str(data), fix="check that the input has rows")
    return BasicDiagnostics(merge_usage(usage).report(), merge_reconstruction(recon).report())


def _releasing(run: Callable[[], T]) -> T:
    """``run()``, then free the Ray actors it started before returning or raising.

    Ray Data stops a dataset's actors only when the dataset is garbage-collected: after a successful
    run it sits in reference cycles, after a failure the error's traceback holds it through the
    frames' locals. In a Ray instance that outlives the call (``ray.init`` by the caller), those
    actors would keep their CPUs, and the next run in the same process would wait forever for a CPU
    to list its files. So the failed run's frames are cleared, the garbage collected, and the CPUs
    given a few seconds to come back.
    """
    idle_before = _idle_cpus()
    try:
        return run()
    except BaseException as error:
        seen: set[int] = set()
        link: BaseException | None = error
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            traceback.clear_frames(link.__traceback__)
            link = link.__cause__ or link.__context__
        raise
    finally:
        gc.collect()
        if idle_before is not None:
            deadline = time.monotonic() + 10.0
            while time.monotonic() < deadline and (_idle_cpus() or 0.0) < idle_before:
                time.sleep(0.2)


def _idle_cpus() -> float | None:
    """The free CPUs of the running Ray instance, or None when none runs in this process."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return float(ray.available_resources().get("CPU", 0.0))


def _dataset(ray: ModuleType, data: str | os.PathLike[str],
             options: RayOptions) -> tuple[Any, tuple[Any, ...], EmbeddingSource]:
    """The Ray dataset of inputs, how actors read its batches, and the local view of the source."""
    path = Path(data)
    source: EmbeddingSource
    if path.is_dir() and (path / "items.parquet").is_file():
        source = open_dataset_embeddings(path)
    else:
        source = open_embeddings(path)
    if isinstance(source, ParquetSource):
        # At least one block per batch, so every actor gets work even from a few large files.
        blocks = max(1, math.ceil(source.num_rows / options.batch_rows))
        dataset = ray.data.read_parquet(str(path), num_cpus=0, override_num_blocks=blocks)
        dataset = dataset.select_columns(list(source.read_columns))
        return dataset, ("parquet", source.list_column, source.feature_columns, source.dim), source
    if isinstance(source, DatasetSource):
        npy, items = source.embeddings_path, str(source.items_path)
    else:
        npy, items = source.path, None
    ranges = [{"start": start, "stop": min(source.num_rows, start + options.batch_rows)}
              for start in range(0, source.num_rows, options.batch_rows)]
    return ray.data.from_items(ranges, override_num_blocks=len(ranges)), ("npy", str(npy), items), source


def _map(dataset: Any, model_dir: str | os.PathLike[str], reader: tuple[Any, ...], output: str,
         options: RayOptions, ray: ModuleType, num_rows: int) -> Any:
    cpus = float(ray.cluster_resources().get("CPU", 1))
    actors = options.actors or max(1, int(cpus) // options.cpus_per_actor)
    actors = min(actors, max(1, math.ceil(num_rows / options.batch_rows)))  # no actor without a batch
    # Ray Data's file-listing task always asks for one CPU: actors that reserved every free CPU would
    # wait for it forever. So the actors leave one free CPU unreserved (they still run cpus_per_actor
    # threads); free, not total: actors of an earlier run may still hold theirs.
    free = min(cpus, float(ray.available_resources().get("CPU", cpus)))
    reserved = max(0.0, min(float(options.cpus_per_actor), (free - 1) / actors))
    batch_size = options.batch_rows if reader[0] == "parquet" else 1  # npy: one row range per call
    return dataset.map_batches(
        TokenizerActor, batch_size=batch_size, batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=reserved,
        num_gpus=1 if options.device.startswith("cuda") else 0,
        fn_constructor_args=(str(Path(model_dir).resolve()), options.device, options.cpus_per_actor, output, reader))


def _levels(model_dir: str | os.PathLike[str]) -> int:
    from sidkit.tokenizers.base import read_model_config

    meta = read_model_config(Path(model_dir))
    return len(meta.get("codebook_sizes", []))


def _parquet_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _is_codes_dir(directory: Path) -> bool:
    """Whether ``directory`` holds only parquet files (codes written earlier), so that it may be replaced."""
    return all(path.suffix == ".parquet" or path.name.startswith(".") for path in directory.iterdir())
