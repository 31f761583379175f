"""Synthetic catalogs and impressions with a known ground truth, at any scale.

Items come from a topic hierarchy of nested, anisotropic Gaussian clusters; users prefer a few top-level
topics (click) and one subtopic within each (like); impressions are time-ordered and only show items
already introduced, so later periods hold items that did not exist earlier.

Generation runs in fixed-size blocks, each seeded by ``SeedSequence(seed, spawn_key=(stream, block))``,
so the data depend on the config alone: not on how the output is chunked, nor on memory.

The generative model (all vectors in R^D, ``unit`` scales to length 1):

- centres: ``c0[k] = s_0 * unit(g)``; a level-l node is its parent's centre plus ``s_l * unit(g)``.
- item i of leaf f: ``x_i = c_leaf[f] + eps``, ``eps_d ~ N(0, std[f, d]^2)``, ``std[f]`` random per
  dimension (``anisotropy``) with RMS ``leaf_spread / sqrt(D)``.
- popularity: ``w_i = (1 + N u_i)^(-popularity_exponent)``, ``u_i ~ U(0, 1)``: Zipf in rank.
- user u: top-topic weights ``p_u ~ Dirichlet(user_concentration)``, a favourite subtopic per topic,
  taste ``t_u = sum_k p_uk unit(c0[k]) + personal_taste * unit(z_u)`` and like vector
  ``v_u = sum_k p_uk unit(c1[fav_uk] - c0[k])``.
- impression: a user drawn by activity; with probability ``personalization`` an item of a topic drawn
  from ``p_u``, else any item, either way by popularity among the items introduced by then.
- ``click ~ Bernoulli(sigmoid(click_scale <t_u, x_i> + popularity_weight (log w_i - mean log w)
  + click_bias))``; ``like = click * Bernoulli(sigmoid(like_scale <v_u, x_i> + like_bias))``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from sidkit.data.catalog import ItemCatalog
from sidkit.data.dataset import (
    EMBEDDINGS_FILE,
    INTERACTIONS_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    USERS_FILE,
    Dataset,
    Manifest,
)
from sidkit.data.interactions import Interactions
from sidkit.errors import ConfigError, DataError
from sidkit.io import atomic_dir, reserve_space, write_json
from sidkit.progress import track

CONFIG_FILE = "synthetic.json"
EMBEDDING_MODEL = "synthetic"

# Fixed generation blocks: the seed of a block depends on its index, so these sizes are part of the
# data's definition. Changing them changes every dataset a seed produces.
_ITEM_BLOCK = 1 << 14
_EVENT_BLOCK = 1 << 16
_STREAM_WORLD, _STREAM_USERS, _STREAM_ITEMS, _STREAM_EVENTS = range(4)


@dataclass(frozen=True)
class SyntheticConfig:
    """Everything that defines a synthetic dataset; the same config always gives the same data.

    Attributes:
        items, users, interactions: N items, U users, M impressions.
        dim: D, the embedding dimension.
        topics: branching per level, e.g. (16, 8, 8): 16 topics, 8 subtopics each, 8 leaves each.
        seed: non-negative; another seed gives other data.
        level_scales: distance of a level's centres from their parent's, one per level; None gives
            0.6 ** level (1, 0.6, 0.36, ...), shrinking with depth.
        leaf_spread: RMS distance of an item from its leaf centre.
        anisotropy: standard deviation of the log per-dimension scale of a leaf's covariance.
        topic_imbalance: standard deviation of the log leaf size weights (0: leaves equally likely).
        popularity_exponent: Zipf exponent of item popularity (0: uniform).
        user_activity_exponent: Zipf exponent of user activity.
        user_concentration: Dirichlet parameter of users' top-topic weights (small: few topics each).
        personal_taste: weight of a user's own random direction in the click taste vector.
        personalization: share of impressions drawn from a topic the user likes.
        click_scale, popularity_weight, click_bias: the click model (see the module docstring).
        like_scale, like_bias: the like-given-click model.
        new_item_fraction: share of items introduced after ``start_time``.
        new_item_horizon: share of the period over which those items arrive (evenly).
        start_time, duration: impressions have timestamps in [start_time, start_time + duration).
    """

    items: int = 10_000
    users: int = 1_000
    interactions: int = 100_000
    dim: int = 64
    topics: tuple[int, ...] = (16, 8, 8)
    seed: int = 0
    level_scales: tuple[float, ...] | None = None
    leaf_spread: float = 0.35
    anisotropy: float = 0.5
    topic_imbalance: float = 0.5
    popularity_exponent: float = 1.0
    user_activity_exponent: float = 0.5
    user_concentration: float = 0.2
    personal_taste: float = 0.5
    personalization: float = 0.7
    click_scale: float = 3.0
    popularity_weight: float = 0.3
    click_bias: float = -2.0
    like_scale: float = 4.0
    like_bias: float = -1.0
    new_item_fraction: float = 0.5
    new_item_horizon: float = 0.9
    start_time: int = 1_704_067_200  # 2024-01-01 UTC
    duration: int = 90 * 86_400

    def __post_init__(self) -> None:
        if isinstance(self.topics, Iterable) and not isinstance(self.topics, tuple):
            object.__setattr__(self, "topics", tuple(self.topics))
        if self.level_scales is not None and not isinstance(self.level_scales, tuple):
            object.__setattr__(self, "level_scales", tuple(self.level_scales))
        _validate(self)

    @property
    def num_leaves(self) -> int:
        return math.prod(self.topics)

    @property
    def scales(self) -> tuple[float, ...]:
        """Distance of each level's centres from their parent's, (levels,)."""
        if self.level_scales is not None:
            return self.level_scales
        return tuple(0.6**level for level in range(len(self.topics)))

    @property
    def initial_items(self) -> int:
        """Items present from ``start_time``: every leaf has one, so every topic can be shown."""
        return min(self.items, max(self.num_leaves, round((1.0 - self.new_item_fraction) * self.items)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def from_dict(data: dict[str, Any]) -> SyntheticConfig:
        known = {f.name for f in dataclasses.fields(SyntheticConfig)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown synthetic settings {unknown}", where=CONFIG_FILE,
                              fix=f"use only {sorted(known)}")
        return SyntheticConfig(**data)


def _validate(c: SyntheticConfig) -> None:
    def fail(name: str, problem: str, fix: str) -> None:
        raise ConfigError(problem, where=f"SyntheticConfig.{name}", fix=fix)

    for name in ("items", "users", "interactions", "dim", "seed", "start_time", "duration"):
        value = getattr(c, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            fail(name, f"{name} must be an integer, got {value!r}", f"pass a whole number for {name}")
    for name in ("items", "users", "interactions", "duration"):
        if getattr(c, name) < 1:
            fail(name, f"{name} must be positive, got {getattr(c, name)}", f"pass {name} >= 1")
    if c.dim < 2:
        fail("dim", f"dim must be at least 2, got {c.dim}", "pass dim >= 2 (default 64)")
    if c.seed < 0:
        fail("seed", f"seed must be non-negative, got {c.seed}", "pass a seed >= 0")
    topics_ok = isinstance(c.topics, tuple) and len(c.topics) > 0 and all(
        not isinstance(k, bool) and isinstance(k, (int, np.integer)) and k >= 1 for k in c.topics)
    if not topics_ok:
        fail("topics", f"topics must be a non-empty tuple of positive integers, got {c.topics!r}",
             "pass branching factors per level, e.g. topics=(16, 8, 8)")
    if c.items < c.num_leaves:
        fail("items", f"{c.items} items cannot fill {c.num_leaves} leaf topics {c.topics}",
             f"pass items >= {c.num_leaves} or fewer topics, e.g. topics={_smaller_topics(c)}")
    if c.level_scales is not None and (len(c.level_scales) != len(c.topics)
                                       or not all(_is_number(s) and s > 0 for s in c.level_scales)):
        fail("level_scales", f"level_scales {c.level_scales} must hold {len(c.topics)} positive values, "
             "one per level of topics", "pass one positive scale per level, or None for the default")
    for name in ("leaf_spread", "anisotropy", "topic_imbalance", "popularity_exponent",
                 "user_activity_exponent", "personal_taste", "click_scale", "popularity_weight",
                 "like_scale", "click_bias", "like_bias", "user_concentration", "personalization",
                 "new_item_fraction", "new_item_horizon"):
        value = getattr(c, name)
        if not _is_number(value) or not math.isfinite(value):
            fail(name, f"{name} must be a finite number, got {value!r}", f"pass a finite number for {name}")
        if name not in ("click_bias", "like_bias") and value < 0:
            fail(name, f"{name} must be non-negative, got {value}", f"pass {name} >= 0")
    if not c.user_concentration > 0:
        fail("user_concentration", f"user_concentration must be positive, got {c.user_concentration}",
             "pass a Dirichlet parameter > 0, e.g. 0.2 for users who like few topics")
    for name in ("personalization", "new_item_fraction", "new_item_horizon"):
        value = getattr(c, name)
        if not 0 <= value <= 1:
            fail(name, f"{name} must lie in [0, 1], got {value}", f"pass a share between 0 and 1 for {name}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _smaller_topics(c: SyntheticConfig) -> tuple[int, ...]:
    topics = list(c.topics)
    while math.prod(topics) > c.items and max(topics) > 1:
        topics[topics.index(max(topics))] //= 2
    return tuple(topics)


# ---------------------------------------------------------------- the world: centres and users


@dataclass(frozen=True, eq=False)
class _World:
    """What every block needs: topic geometry and users (small next to items and impressions).

    Attributes:
        centres: per level l, (prod(topics[:l+1]), D) float64.
        leaf_centre: (F, D) float32 leaf centres; leaf_std: (F, D) float32 per-dimension noise scale.
        leaf_cum: (F,) float64 cumulative leaf weights, ending at 1.
        leaf_first: (F,) int64, the leaf of item rows 0..F-1 (a permutation: every leaf gets one).
        leaf_label: (F,) str, e.g. "topic 3 / sub 3.5 / leaf 3.5.2".
        user_activity: (U,) float64; user_cum its cumulative sum.
        topic_weight: (U, K0) float64 rows summing to 1.
        taste: (U, D) float32 click taste; like: (U, D) float32 like vector.
    """

    config: SyntheticConfig
    centres: tuple[np.ndarray, ...]
    leaf_centre: np.ndarray
    leaf_std: np.ndarray
    leaf_cum: np.ndarray
    leaf_first: np.ndarray
    leaf_label: np.ndarray
    user_activity: np.ndarray
    user_cum: np.ndarray
    topic_weight: np.ndarray
    taste: np.ndarray
    like: np.ndarray


def _rng(seed: int, stream: int, block: int = 0) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(stream, block))))


def _unit_rows(g: np.ndarray) -> np.ndarray:
    return g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)


def _build_world(c: SyntheticConfig) -> _World:
    rng = _rng(c.seed, _STREAM_WORLD)
    centres: list[np.ndarray] = []
    parent = np.zeros((1, c.dim))
    for level, (branch, scale) in enumerate(zip(c.topics, c.scales, strict=True)):
        count = math.prod(c.topics[: level + 1])
        offsets = scale * _unit_rows(rng.standard_normal((count, c.dim)))
        centres.append(np.repeat(parent, branch, axis=0) + offsets)
        parent = centres[-1]
    leaves = c.num_leaves
    log_scale = c.anisotropy * rng.standard_normal((leaves, c.dim))
    raw_scale = np.exp(log_scale)
    scale = raw_scale / np.sqrt(np.mean(raw_scale**2, axis=1, keepdims=True))  # RMS 1 per leaf
    leaf_std = (c.leaf_spread / math.sqrt(c.dim)) * scale
    weight = np.exp(c.topic_imbalance * rng.standard_normal(leaves))
    leaf_cum = np.cumsum(weight / weight.sum())
    leaf_cum[-1] = 1.0
    leaf_first = rng.permutation(leaves).astype(np.int64)
    users = _build_users(c, centres)
    return _World(c, tuple(centres), centres[-1].astype(np.float32), leaf_std.astype(np.float32), leaf_cum,
                  leaf_first, _leaf_labels(c.topics), *users)


def _leaf_labels(topics: tuple[int, ...]) -> np.ndarray:
    """(F,) labels such as "topic 3 / sub 3.5 / leaf 3.5.2" (one level: "topic 3")."""
    depth = len(topics)
    names = ["topic"] + ["sub"] * (depth - 2) + (["leaf"] if depth > 1 else [])
    local = [np.arange(math.prod(topics)) // math.prod(topics[lv + 1:]) % topics[lv] for lv in range(depth)]
    labels = []
    for path in zip(*(a.tolist() for a in local), strict=True):
        labels.append(" / ".join(f"{names[lv]} {'.'.join(map(str, path[: lv + 1]))}" for lv in range(depth)))
    return np.array(labels, dtype=object)


def _build_users(c: SyntheticConfig,
                 centres: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = _rng(c.seed, _STREAM_USERS)
    k0 = c.topics[0]
    activity = (1.0 + c.users * rng.random(c.users)) ** -c.user_activity_exponent
    if k0 > 1:
        weight = rng.dirichlet(np.full(k0, c.user_concentration), size=c.users)
        weight = np.nan_to_num(weight)  # guard against 0/0 for tiny concentrations
        empty = weight.sum(axis=1) <= 0
        weight[empty, rng.integers(0, k0, int(empty.sum()))] = 1.0
        weight /= weight.sum(axis=1, keepdims=True)
    else:
        weight = np.ones((c.users, 1))
    personal = _unit_rows(rng.standard_normal((c.users, c.dim)))
    taste = weight @ _unit_rows(centres[0]) + c.personal_taste * personal
    if len(c.topics) > 1:
        # Likes follow a favourite subtopic inside each liked topic: a finer level than clicks.
        favourite = rng.integers(0, c.topics[1], size=(c.users, k0))
        sub = np.arange(k0)[None, :] * c.topics[1] + favourite  # (U, K0) global subtopic ids
        direction = _unit_rows(centres[1] - np.repeat(centres[0], c.topics[1], axis=0))
        like = np.zeros((c.users, c.dim))
        for k in range(k0):  # a loop, not a (U, K0, D) gather, to keep memory at O(U * D)
            like += weight[:, k:k + 1] * direction[sub[:, k]]
    else:
        like = _unit_rows(rng.standard_normal((c.users, c.dim)))
    return activity, np.cumsum(activity), weight, taste.astype(np.float32), like.astype(np.float32)


# ---------------------------------------------------------------- items


@dataclass(frozen=True, eq=False)
class _ItemBlock:
    """Rows [start, start + n) of the catalog: a table (item_id, text, topics, introduced_at,
    popularity) and (n, D) float32 embeddings."""

    start: int
    table: pa.Table
    embeddings: np.ndarray


def _introduced_at(c: SyntheticConfig, rows: np.ndarray) -> np.ndarray:
    """(n,) int64 introduction times, non-decreasing in the row: new items arrive evenly."""
    first = c.initial_items
    span = max(1, int(c.duration * c.new_item_horizon))
    late = np.maximum(rows - first + 1, 0)
    return c.start_time + late * span // max(1, c.items - first)


def _item_blocks(world: _World) -> Iterator[_ItemBlock]:
    c = world.config
    depth = len(c.topics)
    for block in range(_num_blocks(c.items, _ITEM_BLOCK)):
        rng = _rng(c.seed, _STREAM_ITEMS, block)
        start = block * _ITEM_BLOCK
        rows = np.arange(start, min(start + _ITEM_BLOCK, c.items), dtype=np.int64)
        n = len(rows)
        leaf = np.minimum(np.searchsorted(world.leaf_cum, rng.random(n), side="right"), c.num_leaves - 1)
        first = rows < c.num_leaves
        leaf[first] = world.leaf_first[rows[first]]
        rank = 1.0 + c.items * rng.random(n)
        popularity = rank**-c.popularity_exponent
        noise = rng.standard_normal((n, c.dim), dtype=np.float32)
        embeddings = world.leaf_centre[leaf] + noise * world.leaf_std[leaf]
        labels = world.leaf_label[leaf]
        text = [f"{label} item {row}" for label, row in zip(labels.tolist(), rows.tolist(), strict=True)]
        columns: dict[str, Any] = {"item_id": rows, "text": pa.array(text, type=pa.string())}
        for level in range(depth):
            columns[f"topic_l{level}"] = leaf // math.prod(c.topics[level + 1:])
        columns["introduced_at"] = _introduced_at(c, rows)
        columns["popularity"] = popularity
        yield _ItemBlock(start, pa.table(columns), embeddings)


def _num_blocks(total: int, size: int) -> int:
    return -(-total // size)


# ---------------------------------------------------------------- impressions


@dataclass(frozen=True, eq=False)
class _ItemIndex:
    """What sampling impressions needs to know about items, N = items, K0 = top topics.

    Attributes:
        introduced_at: (N,) int64, non-decreasing.
        pop_cum: (N,) float64 cumulative popularity in row order.
        log_pop: (N,) float64 centred log popularity.
        topic_rows: K0 arrays, the rows of each top topic in increasing order.
        topic_cum: K0 arrays, cumulative popularity along topic_rows.
    """

    introduced_at: np.ndarray
    pop_cum: np.ndarray
    log_pop: np.ndarray
    topic_rows: tuple[np.ndarray, ...]
    topic_cum: tuple[np.ndarray, ...]

    @staticmethod
    def build(introduced_at: np.ndarray, popularity: np.ndarray, topic: np.ndarray, k0: int) -> _ItemIndex:
        popularity = np.asarray(popularity, dtype=np.float64)
        log_pop = np.log(popularity)
        rows = tuple(np.flatnonzero(topic == k) for k in range(k0))
        return _ItemIndex(np.asarray(introduced_at, dtype=np.int64), np.cumsum(popularity),
                          log_pop - log_pop.mean(), rows, tuple(np.cumsum(popularity[r]) for r in rows))


def _draw(cum: np.ndarray, available: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Positions in [0, available) drawn with weights diff(cum), one per uniform ``u``, all (n,)."""
    pos = np.searchsorted(cum, u * cum[available - 1], side="right")
    return np.minimum(pos, available - 1)


def _logits(world: _World, index: _ItemIndex, embeddings: np.ndarray, users: np.ndarray,
            items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True click and like logits, each (n,) float64, for pairs (users[j], items[j])."""
    c = world.config
    x = np.asarray(embeddings[items], dtype=np.float64)
    taste = world.taste[users].astype(np.float64)
    click = (c.click_scale * np.einsum("nd,nd->n", x, taste)
             + c.popularity_weight * index.log_pop[items] + c.click_bias)
    like_vec = world.like[users].astype(np.float64)
    like = c.like_scale * np.einsum("nd,nd->n", x, like_vec) + c.like_bias
    return click, like


def _event_blocks(world: _World, index: _ItemIndex, embeddings: np.ndarray) -> Iterator[pa.Table]:
    """Impression tables (user_id, item_id, timestamp, click, like) in time order."""
    c = world.config
    total = c.interactions
    for block in range(_num_blocks(total, _EVENT_BLOCK)):
        rng = _rng(c.seed, _STREAM_EVENTS, block)
        first, stop = block * _EVENT_BLOCK, min((block + 1) * _EVENT_BLOCK, total)
        n = stop - first
        # Each block owns a slice of the period, so sorting within blocks sorts the whole stream.
        low = c.start_time + first * c.duration // total
        high = c.start_time + stop * c.duration // total
        times = low + np.floor(np.sort(rng.random(n)) * (high - low)).astype(np.int64)
        users = np.minimum(np.searchsorted(world.user_cum, rng.random(n) * world.user_cum[-1], side="right"),
                           c.users - 1)
        personal = rng.random(n) < c.personalization
        topic_u, item_u, click_u, like_u = rng.random((4, n))
        available = np.searchsorted(index.introduced_at, times, side="right")
        items = _draw(index.pop_cum, available, item_u)
        cum_weight = np.cumsum(world.topic_weight[users], axis=1)
        topic = np.minimum((cum_weight < topic_u[:, None] * cum_weight[:, -1:]).sum(axis=1),
                           c.topics[0] - 1)
        for k, (rows, cum) in enumerate(zip(index.topic_rows, index.topic_cum, strict=True)):
            pick = np.flatnonzero(personal & (topic == k))
            if len(pick):
                in_topic = np.searchsorted(rows, available[pick])  # topic-k items introduced so far
                items[pick] = rows[_draw(cum, in_topic, item_u[pick])]
        click_logit, like_logit = _logits(world, index, embeddings, users, items)
        click = click_u < _sigmoid(click_logit)
        like = click & (like_u < _sigmoid(like_logit))
        yield pa.table({"user_id": users.astype(np.int64), "item_id": items.astype(np.int64),
                        "timestamp": times, "click": click.astype(np.int8), "like": like.astype(np.int8)})


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _users_table(world: _World) -> pa.Table:
    c = world.config
    top = np.argmax(world.topic_weight, axis=1)
    return pa.table({
        "user_id": np.arange(c.users, dtype=np.int64),
        "top_topic": top.astype(np.int64),
        "top_topic_weight": world.topic_weight[np.arange(c.users), top].astype(np.float32),
        "activity": (world.user_activity / world.user_activity.mean()).astype(np.float32),
    })


# ---------------------------------------------------------------- public API


@dataclass(frozen=True, eq=False)
class TrueAffinity:
    """The generating model's logits for each interaction of a synthetic dataset.

    Attributes:
        click_logit: (M,) float64; P(click) = sigmoid(click_logit).
        like_logit: (M,) float64; P(like | click) = sigmoid(like_logit).
    """

    click_logit: np.ndarray
    like_logit: np.ndarray


def generate_synthetic(config: SyntheticConfig, *, progress: bool | None = None) -> Dataset:
    """Generate the whole dataset in memory (for small sizes and tests); equals what
    :func:`write_synthetic` writes for the same config."""
    world = _build_world(config)
    blocks = list(track(_item_blocks(world), total=_num_blocks(config.items, _ITEM_BLOCK),
                        description="items", enabled=progress))
    items = pa.concat_tables([b.table for b in blocks])
    embeddings = np.concatenate([b.embeddings for b in blocks])
    del blocks
    index = _index_from_items(items, config)
    events = pa.concat_tables(track(_event_blocks(world, index, embeddings),
                                    total=_num_blocks(config.interactions, _EVENT_BLOCK),
                                    description="impressions", enabled=progress))

    def col(table: pa.Table, name: str) -> np.ndarray:
        return table.column(name).to_numpy(zero_copy_only=False)

    extra = {n: col(items, n) for n in items.column_names if n not in ("item_id", "text")}
    catalog = ItemCatalog(col(items, "item_id"), col(items, "text"), embeddings, extra)
    interactions = Interactions(col(events, "user_id"), col(events, "item_id"), col(events, "timestamp"),
                                labels={"click": col(events, "click"), "like": col(events, "like")})
    manifest = _manifest(config, num_users=interactions.num_users)
    return Dataset(catalog, interactions, _users_table(world), manifest)


def write_synthetic(config: SyntheticConfig, out_dir: str | os.PathLike[str], *,
                    progress: bool | None = None, chunk_rows: int = 1 << 17,
                    overwrite: bool = False) -> Manifest:
    """Stream a synthetic dataset into the dataset directory ``out_dir``; return its manifest.

    Memory stays bounded by one block plus O(N + U * D): embeddings go straight to a memory-mapped
    ``embeddings.npy``, tables to parquet row groups of ``chunk_rows`` rows. The directory is built
    beside ``out_dir`` and renamed into place at the end, so a crash never leaves a dataset that looks
    complete. ``out_dir`` must be absent or empty unless ``overwrite`` is set. The output does not
    depend on ``chunk_rows``. Besides the usual files it holds ``synthetic.json``, the config.
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
        raise ConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}", where="chunk_rows",
                          fix="pass the rows per parquet row group, e.g. 131072")
    target = Path(out_dir)
    _check_target(target, overwrite)
    with atomic_dir(target, what="dataset directory") as work:
        manifest = _write_into(config, work, progress=progress, chunk_rows=chunk_rows)
    return manifest


def true_affinity(config: SyntheticConfig, dataset: Dataset) -> TrueAffinity:
    """Recompute the true click and like logits of every interaction in ``dataset``, which must have
    been generated from ``config`` (its items need embeddings and the ``popularity`` column)."""
    catalog = dataset.catalog
    if catalog.embeddings is None or "popularity" not in catalog.columns:
        raise DataError("the catalog lacks embeddings or the popularity column", where="dataset",
                        fix="pass a dataset made by generate_synthetic or write_synthetic")
    if len(catalog) != config.items or catalog.dim != config.dim:
        raise ConfigError(f"the dataset ({len(catalog)} items, dim {catalog.dim}) does not match the config "
                          f"({config.items} items, dim {config.dim})", where="config",
                          fix="pass the config the dataset was generated from (see synthetic.json)")
    world = _build_world(config)
    index = _ItemIndex.build(catalog.columns["introduced_at"], catalog.columns["popularity"],
                             catalog.columns["topic_l0"], config.topics[0])
    rows = catalog.index_of(dataset.interactions.item_ids)
    users = dataset.interactions.user_ids.astype(np.int64)
    click, like = [], []
    for start in range(0, len(rows), _EVENT_BLOCK):  # bounded memory on large datasets
        part = slice(start, start + _EVENT_BLOCK)
        c, lk = _logits(world, index, catalog.embeddings, users[part], rows[part])
        click.append(c)
        like.append(lk)
    return TrueAffinity(np.concatenate(click), np.concatenate(like))


def load_synthetic_config(directory: str | os.PathLike[str]) -> SyntheticConfig:
    """The config a synthetic dataset directory was written from (its ``synthetic.json``)."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise DataError(f"{CONFIG_FILE} is missing", where=str(directory),
                        fix="only directories written by write_synthetic (sidkit data synth) have one")
    data = json.loads(path.read_text(encoding="utf-8"))
    for name in ("topics", "level_scales"):
        if isinstance(data.get(name), list):
            data[name] = tuple(data[name])
    return SyntheticConfig.from_dict(data)


# ---------------------------------------------------------------- streaming helpers


def _manifest(config: SyntheticConfig, *, num_users: int) -> Manifest:
    return Manifest(source="synthetic", num_items=config.items, num_users=num_users,
                    num_interactions=config.interactions, embedding_model=EMBEDDING_MODEL,
                    embedding_dim=config.dim, created=Manifest.now())


def _index_from_items(items: pa.Table, config: SyntheticConfig) -> _ItemIndex:
    return _ItemIndex.build(items.column("introduced_at").to_numpy(), items.column("popularity").to_numpy(),
                            items.column("topic_l0").to_numpy(), config.topics[0])


def _write_into(config: SyntheticConfig, root: Path, *, progress: bool | None, chunk_rows: int) -> Manifest:
    world = _build_world(config)
    index = _write_items(world, root, progress=progress, chunk_rows=chunk_rows)
    embeddings = np.load(root / EMBEDDINGS_FILE, mmap_mode="r")
    num_users = _write_events(world, index, embeddings, root, progress=progress, chunk_rows=chunk_rows)
    pq.write_table(_users_table(world), root / USERS_FILE)
    write_json(root / CONFIG_FILE, config.to_dict())
    manifest = _manifest(config, num_users=num_users)
    write_json(root / MANIFEST_FILE, dataclasses.asdict(manifest))  # last: its presence means complete
    return manifest


def _write_items(world: _World, root: Path, *, progress: bool | None, chunk_rows: int) -> _ItemIndex:
    """Write items.parquet and embeddings.npy block by block; return what impressions need."""
    c = world.config
    introduced = np.empty(c.items, dtype=np.int64)
    popularity = np.empty(c.items, dtype=np.float64)
    topic = np.empty(c.items, dtype=np.int64)
    emb = np.lib.format.open_memmap(root / EMBEDDINGS_FILE, mode="w+", dtype=np.float32,
                                    shape=(c.items, c.dim))
    reserve_space(root / EMBEDDINGS_FILE)  # a full disk fails here, not as SIGBUS inside the memory map

    def tables() -> Iterator[pa.Table]:
        blocks = track(_item_blocks(world), total=_num_blocks(c.items, _ITEM_BLOCK), description="items",
                       enabled=progress)
        for block in blocks:
            rows = slice(block.start, block.start + block.table.num_rows)
            emb[rows] = block.embeddings
            introduced[rows] = block.table.column("introduced_at").to_numpy()
            popularity[rows] = block.table.column("popularity").to_numpy()
            topic[rows] = block.table.column("topic_l0").to_numpy()
            yield block.table

    _write_parquet_stream(tables(), root / ITEMS_FILE, chunk_rows)
    emb.flush()
    return _ItemIndex.build(introduced, popularity, topic, c.topics[0])


def _write_events(world: _World, index: _ItemIndex, embeddings: np.ndarray, root: Path, *,
                  progress: bool | None, chunk_rows: int) -> int:
    """Write interactions.parquet block by block; return the number of users with impressions."""
    c = world.config
    seen = np.zeros(c.users, dtype=bool)

    def tables() -> Iterator[pa.Table]:
        blocks = track(_event_blocks(world, index, embeddings), total=_num_blocks(c.interactions, _EVENT_BLOCK),
                       description="impressions", enabled=progress)
        for table in blocks:
            seen[table.column("user_id").to_numpy()] = True
            yield table

    _write_parquet_stream(tables(), root / INTERACTIONS_FILE, chunk_rows)
    return int(seen.sum())


def _rechunk(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Regroup a stream of tables into tables of exactly ``rows`` rows (the last may be shorter)."""
    pending: list[pa.Table] = []
    count = 0
    for table in tables:
        pending.append(table)
        count += table.num_rows
        while count >= rows:
            merged = pa.concat_tables(pending)
            yield merged.slice(0, rows)
            pending, count = [merged.slice(rows)], count - rows
    if count:
        yield pa.concat_tables(pending)


def _write_parquet_stream(tables: Iterator[pa.Table], path: Path, chunk_rows: int) -> None:
    writer: pq.ParquetWriter | None = None
    try:
        for chunk in _rechunk(tables, chunk_rows):
            if writer is None:
                writer = pq.ParquetWriter(path, chunk.schema)
            writer.write_table(chunk.combine_chunks(), row_group_size=chunk_rows)
    finally:
        if writer is not None:
            writer.close()


def _check_target(target: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target} exists and is not a directory", where=str(target),
                          fix="pass a directory path for the dataset")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise ConfigError(f"{target} is not empty", where=str(target),
                          fix="pass an empty or new directory, or overwrite=True (CLI: --overwrite) to replace it")


