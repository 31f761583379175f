"""A short, printable summary of a dataset directory."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from sidkit.data.dataset import (
    _INTERACTION_CORE,
    EMBEDDINGS_FILE,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    USERS_FILE,
    check_dataset_directory,
    load_embeddings,
)
from sidkit.data.interactions import TIME_UNITS, as_timestamps, timestamp_unit
from sidkit.errors import DataError


@dataclass(frozen=True)
class DatasetSummary:
    source: str
    num_items: int
    num_users: int
    num_interactions: int
    first_time: int
    last_time: int
    interactions_per_user_median: float
    interactions_per_item_median: float
    rating_mean: float | None
    label_rates: dict[str, float]
    item_columns: tuple[str, ...]
    user_columns: tuple[str, ...]
    embedding_shape: tuple[int, int] | None
    embedding_model: str | None
    embedding_mean_norm: float | None
    time_unit: str = "s"  # of the timestamps, detected from their size (sidkit.data.interactions.timestamp_unit)

    def rows(self) -> list[tuple[str, str]]:
        """(name, value) pairs for a two-column table."""
        rows = [
            ("source", self.source),
            ("items", f"{self.num_items:,}"),
            ("users", f"{self.num_users:,}"),
            ("interactions", f"{self.num_interactions:,}"),
            ("time range", f"{_when(self.first_time, self.time_unit)} .. {_when(self.last_time, self.time_unit)}"
                           + ("" if self.time_unit == "s" else f" (timestamps in {self.time_unit})")),
            ("interactions per user (median)", f"{self.interactions_per_user_median:g}"),
            ("interactions per item (median)", f"{self.interactions_per_item_median:g}"),
        ]
        if self.rating_mean is not None:
            rows.append(("mean rating", f"{self.rating_mean:.3f}"))
        rows += [(f"label '{k}' rate", f"{v:.3f}") for k, v in self.label_rates.items()]
        rows.append(("item columns", ", ".join(self.item_columns) or "-"))
        rows.append(("user columns", ", ".join(self.user_columns) or "-"))
        if self.embedding_shape is None:
            rows.append(("embeddings", "none (run `sidkit embed --data DIR`)"))
        else:
            rows.append(("embeddings", f"{self.embedding_shape[0]:,} x {self.embedding_shape[1]} float32, "
                                       f"model {self.embedding_model or 'unknown'}, "
                                       f"mean norm {self.embedding_mean_norm:.3f}"))
        return rows


def summarize_dataset(directory: str | os.PathLike[str]) -> DatasetSummary:
    """Summarize the dataset directory one column at a time, without loading it.

    Reads the parquet schemas, then each interaction column it needs on its own (about 8 bytes per
    interaction at a time) and the first 100,000 rows of the memory-mapped embeddings, so the
    summary of a dataset takes little memory beyond its largest column; item text is never read.
    It checks only what it reads (files and columns present); ``load_dataset`` validates the rest.
    """
    root = check_dataset_directory(directory)
    items = _parquet(root / ITEMS_FILE, required=("item_id", "text"))
    events = _parquet(root / INTERACTIONS_FILE, required=("user_id", "item_id", "timestamp"))
    users = _parquet(root / USERS_FILE, required=()) if (root / USERS_FILE).is_file() else None
    manifest = _manifest(root)

    def column(name: str) -> pa.ChunkedArray:
        return events.read(columns=[name]).column(0)

    per_user = pc.value_counts(column("user_id")).field("counts")
    per_item = pc.value_counts(column("item_id")).field("counts")
    stamps = column("timestamp")
    if pa.types.is_timestamp(stamps.type):  # an Arrow timestamp column: its ticks, in its own unit
        stamps = pc.cast(stamps, pa.int64())
    times = pc.min_max(stamps)
    bounds = as_timestamps(np.array([times["min"].as_py(), times["max"].as_py()]))
    names = events.schema_arrow.names
    labels = [name for name in names if name not in _INTERACTION_CORE]
    emb_path = root / EMBEDDINGS_FILE
    emb = load_embeddings(emb_path, mmap=True) if emb_path.is_file() else None
    mean_norm = None
    if emb is not None:
        sample = np.asarray(emb[: min(len(emb), 100_000)], dtype=np.float64)
        mean_norm = float(np.linalg.norm(sample, axis=1).mean())
    return DatasetSummary(
        source=manifest.get("source") or "directory",
        num_items=items.metadata.num_rows,
        num_users=len(per_user),
        num_interactions=events.metadata.num_rows,
        first_time=int(bounds[0]),
        last_time=int(bounds[1]),
        interactions_per_user_median=_median(per_user),
        interactions_per_item_median=_median(per_item),
        rating_mean=_mean(column("rating")) if "rating" in names else None,
        label_rates={name: _mean(column(name)) for name in labels},
        item_columns=tuple(name for name in items.schema_arrow.names if name not in ("item_id", "text")),
        user_columns=() if users is None else tuple(users.schema_arrow.names),
        embedding_shape=None if emb is None else (int(emb.shape[0]), int(emb.shape[1])),
        embedding_model=manifest.get("embedding_model"),
        embedding_mean_norm=mean_norm,
        time_unit=timestamp_unit(bounds),
    )


def _parquet(path: Path, *, required: tuple[str, ...]) -> pq.ParquetFile:
    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"cannot read parquet file: {exc}", where=str(path),
                        fix="check that the file is a complete parquet file") from None
    missing = [name for name in required if name not in handle.schema_arrow.names]
    if missing:
        raise DataError(f"column '{missing[0]}' is missing", where=str(path),
                        fix=f"{path.name} needs the columns {', '.join(required)}")
    return handle


def _manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST_FILE
    if not path.is_file():
        return {}
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DataError(f"manifest.json is unreadable: {exc}", where=str(path),
                        fix="delete it; sidkit rewrites it from the data") from None
    return manifest if isinstance(manifest, dict) else {}


def _median(counts: pa.Array) -> float:
    return float(np.median(counts.to_numpy(zero_copy_only=False))) if len(counts) else 0.0


def _mean(values: pa.ChunkedArray) -> float:
    mean = pc.mean(values).as_py()
    return float("nan") if mean is None else float(mean)


def _when(timestamp: int, unit: str = "s") -> str:
    # Unix times after 1990 print as dates (in whatever unit they are); step counters print as numbers.
    seconds = timestamp / 1000 ** TIME_UNITS.index(unit)
    if seconds > 631_152_000:
        try:
            return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%d")
        except (ValueError, OverflowError, OSError):
            pass
    return str(timestamp)
