"""Saved rankers: ``config.json`` + ``weights.safetensors``, and scoring new impressions with them.

A saved ranker holds everything needed to score an impression given raw ids: the model's name and
architecture, its weights, the items' token bags (the representation, so the tokenizer and the
hashing are not needed again), the catalog's item ids, how user ids and users.parquet columns were
encoded, and the history length. :func:`load_ranker` rebuilds it; :func:`score_impressions` scores
(user id, item id, time) rows, with each user's history taken from a dataset's engagements strictly
before each impression's time, exactly as in training.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidkit import __version__
from sidkit.errors import DataError
from sidkit.features.types import ItemRepresentation
from sidkit.io import atomic_dir, file_mode, write_json

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT = "sidkit-ranker/1"
_TOKENS = "representation.tokens"
_DENSE = "representation.dense"


@dataclass(frozen=True, eq=False)
class SavedRanker:
    """A ranker loaded from disk, ready to score.

    Attributes:
        model: the MultiTaskRanker in eval mode.
        config: the saved config.json as a dict.
        item_ids: (N,) the catalog's item ids in row order.
    """

    model: Any
    config: dict[str, Any]
    item_ids: np.ndarray

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(self.config["tasks"])

    @property
    def history(self) -> int:
        return int(self.config["history"])


def save_ranker(path: str | os.PathLike[str], model: Any, representation: ItemRepresentation, data: Any, *,
                model_name: str, model_config: Any, item_ids: np.ndarray, users: Any = None,
                user_features: Sequence[str] | None = None, seed: int = 0) -> Path:
    """Write ``model`` (trained on ``data``, a RankingData) to the directory ``path``; returns it.

    The directory is written whole into a temporary sibling and renamed into place, so a reader never
    sees half a ranker.
    """
    from safetensors.torch import save_file

    target = Path(path)
    with atomic_dir(target, what="saved ranker") as tmp:
        tensors = {name: value.detach().cpu().contiguous() for name, value in model.state_dict().items()}
        import torch

        tensors[_TOKENS] = torch.from_numpy(np.ascontiguousarray(representation.tokens))
        if representation.dense is not None:
            tensors[_DENSE] = torch.from_numpy(np.ascontiguousarray(representation.dense))
        save_file(tensors, str(tmp / WEIGHTS_FILE))
        ids = np.asarray(item_ids)
        config = {
            "format": FORMAT, "sidkit_version": __version__, "model": model_name,
            "model_config": asdict(model_config), "tasks": list(data.tasks),
            "conditional": [list(pair) for pair in data.conditional],
            "num_user_embeddings": int(data.num_user_embeddings), "user_fields": list(data.user_field_names),
            "user_encoding": data.user_encoding,
            "user_features": None if user_features is None else list(user_features),
            "history": int(data.train.history.shape[1]), "representation": representation.name,
            "num_embeddings": int(representation.num_embeddings), "budget": representation.budget,
            "item_ids": ids.tolist(), "item_id_kind": "str" if ids.dtype.kind in "OUS" else "int",
            "seed": int(seed),
        }
        write_json(tmp / CONFIG_FILE, config)
        os.chmod(tmp / WEIGHTS_FILE, file_mode())
    return target


def load_ranker(path: str | os.PathLike[str]) -> SavedRanker:
    """Read a directory written by :func:`save_ranker` (``sidkit rank`` writes one per run under models/)."""
    from safetensors.torch import load_file

    from sidkit.ranking.models import ModelConfig, build_model

    root = Path(path)
    if not (root / CONFIG_FILE).is_file() or not (root / WEIGHTS_FILE).is_file():
        raise DataError(f"{root} is not a saved ranker (config.json + weights.safetensors)", where=str(root),
                        fix="pass a directory under a rank run's models/, e.g. RUN/models/sid-prefix/seed-0")
    config = json.loads((root / CONFIG_FILE).read_text(encoding="utf-8"))
    if config.get("format") != FORMAT:
        raise DataError(f"{root / CONFIG_FILE} has format {config.get('format')!r}, not {FORMAT!r}",
                        where=str(root), fix="save the ranker again with this sidkit")
    tensors = load_file(str(root / WEIGHTS_FILE))
    tokens = tensors.pop(_TOKENS).numpy()
    dense = tensors.pop(_DENSE).numpy() if _DENSE in tensors else None
    representation = ItemRepresentation(config["representation"], tokens, int(config["num_embeddings"]), dense,
                                        config.get("budget"))
    model_config = config["model_config"]
    for key in ("hidden_dims", "expert_dims", "tower_dims"):
        model_config[key] = tuple(model_config[key])
    model = build_model(config["model"], representation, int(config["num_user_embeddings"]), tuple(config["tasks"]),
                        ModelConfig(**model_config), num_user_fields=len(config["user_fields"]))
    model.load_state_dict(tensors)
    model.eval()
    kind = str if config.get("item_id_kind") == "str" else np.int64
    return SavedRanker(model, config, np.asarray(config["item_ids"]).astype(kind))


def score_impressions(ranker: SavedRanker, user_ids: np.ndarray, item_ids: np.ndarray, times: np.ndarray, *,
                      engagements: Any, users: Any = None, context: Mapping[str, np.ndarray] | None = None,
                      batch_size: int = 8192) -> dict[str, np.ndarray]:
    """Task -> (n,) probabilities of n impressions given as raw ids and times.

    Args:
        ranker: a loaded ranker.
        user_ids, item_ids, times: (n,) each; every item must be in the ranker's catalog.
        engagements: Interactions whose engaged rows (all rows, or ``click == 1``) give each user's
            history: the last H engaged items strictly before each impression's time.
        users: users.parquet as a pyarrow Table when the ranker uses user features.
        context: column name -> (n,) values, when the ranker uses context features.

    Raises:
        DataError: items outside the ranker's catalog, or lengths that differ.
    """
    from sidkit.ranking.data import _dense_codes, _Timeline, encode_context, encode_users
    from sidkit.ranking.training import predict
    from sidkit.ranking.types import RankingSplit

    users_in, items_in, times_in = np.asarray(user_ids), np.asarray(item_ids), np.asarray(times, dtype=np.int64)
    if not (len(users_in) == len(items_in) == len(times_in)):
        raise DataError(f"{len(users_in)} user ids, {len(items_in)} item ids and {len(times_in)} times differ in "
                        "length", where="impressions", fix="give one user id, item id and time per impression")
    rows = _rows_of(ranker.item_ids, items_in)
    encoding = ranker.config["user_encoding"]
    features = encode_users(encoding, users_in, users)
    if encoding.get("context"):
        features = np.concatenate([features, encode_context(encoding, context or {}, len(users_in))], axis=1)
    eng_items = _rows_of(ranker.item_ids, engagements.item_ids, strict=False)
    click = engagements.labels.get("click")
    engaged = (eng_items >= 0) if click is None else (eng_items >= 0) & (click == 1)
    all_users = np.concatenate([np.asarray(engagements.user_ids)[engaged], users_in])
    if all_users.dtype.kind == "O":
        all_users = all_users.astype(str)
    _, codes = _dense_codes(all_users)
    n_eng = int(engaged.sum())
    timeline = _Timeline.build(codes[:n_eng], np.asarray(engagements.timestamps)[engaged], eng_items[engaged])
    history = timeline.histories(codes[n_eng:], times_in, length=ranker.history, pad=len(ranker.item_ids))
    split = RankingSplit(rows, features, history, {}, times_in, codes[n_eng:])
    return predict(ranker.model, split, batch_size)


def _rows_of(catalog: np.ndarray, ids: np.ndarray, *, strict: bool = True) -> np.ndarray:
    """Catalog rows of ``ids``; -1 for unknown ids (DataError naming them when ``strict``)."""
    known = np.asarray(catalog)
    wanted = np.asarray(ids)
    if known.dtype.kind != wanted.dtype.kind and not (known.dtype.kind in "iu" and wanted.dtype.kind in "iu"):
        known, wanted = known.astype(str), wanted.astype(str)
    order = np.argsort(known, kind="stable")
    found = np.minimum(np.searchsorted(known, wanted, sorter=order), len(known) - 1)
    rows = order[found]
    hit = known[rows] == wanted
    if strict and not hit.all():
        missing = np.unique(wanted[~hit])
        raise DataError(f"{len(missing)} item id(s) are not in the ranker's catalog, e.g. {missing[:3].tolist()}",
                        where="impressions.item_id", fix="score items of the catalog the ranker was trained on")
    return np.where(hit, rows, -1).astype(np.int64)


def impressions_table_columns(table: Any) -> Mapping[str, np.ndarray]:
    """user_id, item_id and timestamp columns of an impressions table (pyarrow), checked."""
    missing = [name for name in ("user_id", "item_id", "timestamp") if name not in table.column_names]
    if missing:
        raise DataError(f"the impressions lack column(s) {missing} (columns: {table.column_names})",
                        where="impressions", fix="give user_id, item_id and timestamp columns")
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in ("user_id", "item_id", "timestamp")}
