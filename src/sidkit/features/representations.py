"""Item representations for rankers: each item becomes a bag of embedding-table rows (and/or a dense vector).

Names (combine any with ``+``, e.g. ``"hash+sid-prefix"``):

- ``hash``: the item id, randomly hashed into the table (the baseline Semantic IDs replace).
- ``sid-unigram``: one row per (level, code).
- ``sid-bigram``: one row per non-overlapping pair (c1, c2), (c3, c4), ...; an odd last level stays alone.
- ``sid-prefix``: one row per prefix (c1), (c1, c2), ..., (c1..cL) (Zheng et al.).
- ``sid-spm``: SentencePiece pieces of the SID, learnt on training items only (see :mod:`.spm`).
- ``dense``: the content embedding itself, for a learnt projection; no table rows.

**Budgets.** ``budget`` is the table size in rows (padding excluded): every table representation gets
``num_embeddings == budget + 1``, so one budget for all gives a size-matched comparison (Singh et al.).
Within a budget, each *field* (the item id, a level, a pair, a depth) gets exact rows when its key
space is small enough, and the rest share the remaining rows by hashing: fields are visited from the
smallest key space up, and a field is exact when it needs at most its fair share of the rows left
(water-filling). So a 3 x 64 unigram in 4,096 rows is exact; a 3 x 64 prefix in 4,096 rows keeps
depth 1 exact and hashes depths 2 and 3 into the other 4,032 rows; ``hash`` with a budget of at
least the catalog size gives every item its own row (no collisions: the best case for hashing), and
below it hashes the ids with a salt drawn from the seed, so collisions differ from seed to seed.
``budget=None`` gives every field exact rows (the natural table size). A combination splits the
budget between its table components (``hash+sid-prefix`` at 4,096 rows: 2,048 each, each its own
block), so that every feature set of one budget has the same table rows. ``rows_used`` counts the
rows that some item actually uses.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from sidkit.errors import ConfigError, DataError
from sidkit.features.hashing import field_salt, hash_rows, stable_keys
from sidkit.features.spm import train_sid_spm
from sidkit.features.types import PAD_TOKEN, ItemRepresentation
from sidkit.ids import SemanticIds

REPRESENTATIONS: tuple[str, ...] = ("hash", "sid-unigram", "sid-bigram", "sid-prefix", "sid-spm", "dense")
_NEEDS_SIDS = frozenset({"sid-unigram", "sid-bigram", "sid-prefix", "sid-spm"})
# Beyond this many exact rows a table is unreasonable; budget=None then asks for a budget.
MAX_NATURAL_ROWS = 1 << 24
_EXACT_KEY_LIMIT = 1 << 62


@dataclass(frozen=True, eq=False)
class _Field:
    """One token per item: a key in ``[0, space)`` for exact rows, and columns to hash otherwise.

    Attributes:
        name: names the field in its hash salt, e.g. ``"depth-2"``.
        space: the number of distinct keys the field can take.
        columns: (N, j) int64 values whose tuple identifies the key (hashed when not exact).
        keys: (N,) int64 exact keys in ``[0, space)``, or None when the space is too large to index.
    """

    name: str
    space: int
    columns: np.ndarray
    keys: np.ndarray | None


def parse_representation(name: str) -> tuple[str, ...]:
    """The components of a representation name: ``"hash+sid-prefix"`` -> ``("hash", "sid-prefix")``."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"a representation name must be a non-empty string, got {name!r}",
                          where="representation", fix=f"use one of {', '.join(REPRESENTATIONS)} or a+b")
    parts = tuple(part.strip() for part in name.split("+"))
    unknown = [part for part in parts if part not in REPRESENTATIONS]
    if unknown:
        raise ConfigError(f"unknown representation {unknown[0]!r} in {name!r}", where="representation",
                          fix=f"use one of {', '.join(REPRESENTATIONS)}, or combine them with '+' "
                          "(e.g. hash+sid-prefix)")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"{name!r} names a component twice", where="representation",
                          fix="name each component once")
    return parts


def build_representation(name: str, *, item_ids: np.ndarray, sids: SemanticIds | None = None,
                         embeddings: np.ndarray | None = None, budget: int | None = None,
                         train_items: np.ndarray | None = None, seed: int = 0) -> ItemRepresentation:
    """Build one item representation over a catalog of N items.

    Args:
        name: a name of :data:`REPRESENTATIONS` or a ``+`` combination of them.
        item_ids: (N,) int or str catalog item ids, in catalog order (hashed by ``hash``).
        sids: SemanticIds of the N items (every ``sid-*`` component needs them).
        embeddings: (N, D) float content embeddings (``dense`` needs them).
        budget: table rows in all (padding excluded), split evenly between the table components of a
            combination; None gives the natural (exact) size, which ``sid-spm`` does not have, so it
            needs a budget.
        train_items: (N,) bool (item in training) or int (training impressions per item) for
            ``sid-spm``: only those items' SIDs train it, so held-out items never reach it.
        seed: salts every hash; the same inputs and seed give the same tokens in any process.

    Returns:
        ItemRepresentation with tokens (N + 1, T) (row N is the padding item), ``num_embeddings``
        ``budget + 1``, and ``dense`` (N + 1, D) when ``dense`` is a component.

    Raises:
        ConfigError: unknown name, missing or bad budget, missing sids/embeddings/train_items.
        DataError: sids, embeddings or train_items whose item count differs from ``item_ids``.
    """
    parts = parse_representation(name)
    ids = _checked_item_ids(item_ids)
    n = len(ids)
    budget = _checked_budget(budget)
    if any(part in _NEEDS_SIDS for part in parts):
        sids = _checked_sids(sids, n, name)
    shares = split_budget(budget, sum(part != "dense" for part in parts))
    components = []
    for part in parts:
        share = None if part == "dense" or shares is None else shares.pop(0)
        components.append(_build_component(part, ids=ids, sids=sids, embeddings=embeddings, budget=share,
                                           train_items=train_items, seed=seed))
    return _combine("+".join(parts), components) if len(components) > 1 else components[0]


def split_budget(budget: int | None, parts: int) -> list[int] | None:
    """``budget`` rows split between ``parts`` table components as evenly as possible (the first ones get
    the remainder); None stays None. ConfigError when a component would get no row."""
    if budget is None or parts == 0:
        return None
    if budget < parts:
        raise ConfigError(f"a budget of {budget} rows cannot give each of {parts} tables a row", where="budget",
                          fix=f"use a budget of at least {parts}")
    base, extra = divmod(budget, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def build_representations(names: Iterable[str], **kwargs: object) -> dict[str, ItemRepresentation]:
    """:func:`build_representation` for each name with the same arguments (one budget: size-matched)."""
    return {name: build_representation(name, **kwargs) for name in names}  # type: ignore[arg-type]


def natural_size(name: str, *, num_items: int, sids: SemanticIds | None = None) -> int | None:
    """Table rows (padding excluded) that give every key of ``name`` its own row; None for dense or SPM.

    Use it to size-match: e.g. ``budget = natural_size("sid-unigram", ...)`` for every representation.
    For a combination it is the sum over components (None when any component has none).
    """
    total = 0
    for part in parse_representation(name):
        if part in ("dense", "sid-spm"):
            return None
        if part == "hash":
            total += int(num_items)
            continue
        checked = _checked_sids(sids, 0, name)  # 0: no catalog to match here
        total += sum(field.space for field in _sid_fields(part, checked))
    return total


# ----- components ----------------------------------------------------------------------------------


def _build_component(part: str, *, ids: np.ndarray, sids: SemanticIds | None, embeddings: np.ndarray | None,
                     budget: int | None, train_items: np.ndarray | None, seed: int) -> ItemRepresentation:
    n = len(ids)
    if part == "dense":
        return _dense(ids, embeddings)
    if part == "sid-spm":
        assert sids is not None
        return _spm(sids, budget, train_items)
    if part == "hash":
        keys = stable_keys(ids)
        fields = [_Field("item", n, keys.view(np.int64)[:, None], np.arange(n, dtype=np.int64))]
    else:
        assert sids is not None
        fields = _sid_fields(part, sids)
    tokens, rows = _allocate(fields, budget, seed=seed, where=part)
    return ItemRepresentation(part, _with_pad_row(tokens), rows + 1, budget=rows)


def _sid_fields(part: str, sids: SemanticIds) -> list[_Field]:
    codes, sizes = sids.codes, sids.sizes
    if part == "sid-unigram":
        return [_Field(f"level-{level}", size, codes[:, [level]], codes[:, level])
                for level, size in enumerate(sizes)]
    if part == "sid-bigram":
        groups = [tuple(range(start, min(start + 2, len(sizes)))) for start in range(0, len(sizes), 2)]
        return [_tuple_field(f"pair-{index}", codes, sizes, group) for index, group in enumerate(groups)]
    if part == "sid-prefix":
        return [_tuple_field(f"depth-{depth}", codes, sizes, tuple(range(depth)))
                for depth in range(1, len(sizes) + 1)]
    raise AssertionError(part)


def _tuple_field(name: str, codes: np.ndarray, sizes: Sequence[int], levels: tuple[int, ...]) -> _Field:
    space = int(np.prod([sizes[level] for level in levels], dtype=object))
    keys = None
    if space <= _EXACT_KEY_LIMIT:  # mixed radix, like SemanticIds.prefix_keys
        keys = np.zeros(codes.shape[0], dtype=np.int64)
        for level in levels:
            keys = keys * sizes[level] + codes[:, level]
    return _Field(name, space, codes[:, list(levels)], keys)


def _allocate(fields: list[_Field], budget: int | None, *, seed: int, where: str) -> tuple[np.ndarray, int]:
    """Token rows (N, F) in [1, rows] for each field (water-filling, see the module docstring), and rows."""
    if budget is None:
        natural = sum(field.space for field in fields)
        if natural > MAX_NATURAL_ROWS or any(field.keys is None for field in fields):
            raise ConfigError(f"{where} needs {natural} rows for exact keys", where="budget",
                              fix="pass budget=... (rows of the table) to hash into a fixed size")
        budget = natural
    n = fields[0].columns.shape[0]
    tokens = np.empty((n, len(fields)), dtype=np.int64)
    order = sorted(range(len(fields)), key=lambda index: fields[index].space)  # stable: ties keep order
    offset, left = 0, budget
    hashed: list[int] = []
    for position, index in enumerate(order):
        field = fields[index]
        fair_share = left / (len(order) - position)
        if hashed or field.keys is None or field.space > fair_share:
            hashed.append(index)
            continue
        tokens[:, index] = 1 + offset + field.keys
        offset += field.space
        left -= field.space
    for index in hashed:
        field = fields[index]
        salt = field_salt(seed, f"{where}/{field.name}")
        tokens[:, index] = 1 + offset + hash_rows(field.columns, buckets=left, salt=salt)
    return tokens, budget


def _spm(sids: SemanticIds, budget: int | None, train_items: np.ndarray | None) -> ItemRepresentation:
    if budget is None:
        raise ConfigError("sid-spm needs a budget: its vocabulary size", where="budget",
                          fix=f"pass budget=... of at least {sum(sids.sizes) + 1}")
    if train_items is None:
        raise ConfigError("sid-spm must be trained on training items only, and train_items is missing",
                          where="train_items",
                          fix="pass train_items=RankingData.train_items (or training impression counts per item)")
    model = train_sid_spm(sids, train_items, vocab_size=budget)
    pieces = model.encode(sids)
    width = max(len(p) for p in pieces)
    tokens = np.zeros((len(sids), width), dtype=np.int64)
    lengths = np.array([len(p) for p in pieces])
    rows = np.repeat(np.arange(len(sids)), lengths)
    columns = np.concatenate([np.arange(length) for length in lengths])
    tokens[rows, columns] = np.concatenate(pieces) + 1  # piece id p -> row p + 1; row 0 stays padding
    return ItemRepresentation("sid-spm", _with_pad_row(tokens), budget + 1, budget=budget)


def _dense(ids: np.ndarray, embeddings: np.ndarray | None) -> ItemRepresentation:
    if embeddings is None:
        raise ConfigError("the dense representation needs content embeddings", where="embeddings",
                          fix="pass embeddings=catalog.embeddings")
    array = np.asarray(embeddings)
    if array.ndim != 2 or array.shape[0] != len(ids):
        raise DataError(f"embeddings have shape {array.shape}, the catalog has {len(ids)} items",
                        where="embeddings", fix="pass (N, D) embeddings aligned row by row with the catalog")
    if array.dtype.kind != "f" or not np.all(np.isfinite(array)):
        raise DataError("embeddings must be finite floats", where="embeddings")
    dense = np.zeros((len(ids) + 1, array.shape[1]), dtype=np.float32)
    dense[:-1] = array
    # No table rows: a single padding token per item keeps the bag shape uniform.
    return ItemRepresentation("dense", np.zeros((len(ids) + 1, 1), dtype=np.int64), 1, dense=dense)


def _combine(name: str, components: list[ItemRepresentation]) -> ItemRepresentation:
    """Concatenate token columns; component k's rows are shifted past those of components before it."""
    columns, dense, offset = [], None, 0
    budgets = [c.budget for c in components if c.budget is not None]
    for component in components:
        tokens = component.tokens
        if component.num_embeddings > 1:
            columns.append(np.where(tokens != PAD_TOKEN, tokens + offset, PAD_TOKEN))
            offset += component.num_embeddings - 1
        if component.dense is not None:
            dense = component.dense
    if not columns:  # dense alone carries one padding column
        columns = [components[0].tokens]
    return ItemRepresentation(name, np.concatenate(columns, axis=1), offset + 1, dense=dense,
                              budget=sum(budgets) if budgets else None)


# ----- checks --------------------------------------------------------------------------------------


def _with_pad_row(tokens: np.ndarray) -> np.ndarray:
    return np.concatenate([tokens, np.zeros((1, tokens.shape[1]), dtype=np.int64)])


def _checked_item_ids(item_ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(item_ids)
    if ids.ndim != 1 or len(ids) == 0:
        raise DataError(f"item_ids must be a non-empty 1-d array, got shape {ids.shape}", where="item_ids",
                        fix="pass catalog.item_ids")
    return ids


def _checked_budget(budget: int | None) -> int | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise ConfigError(f"budget must be a positive integer (table rows) or None, got {budget!r}",
                          where="budget", fix="pass e.g. budget=4096")
    return int(budget)


def _checked_sids(sids: SemanticIds | None, n: int, name: str) -> SemanticIds:
    if sids is None:
        raise ConfigError(f"{name!r} needs Semantic IDs", where="sids",
                          fix="pass sids=tokenizer.encode(catalog.embeddings)")
    if not isinstance(sids, SemanticIds):
        raise DataError(f"sids must be SemanticIds, got {type(sids).__name__}", where="sids")
    if n and len(sids) != n:
        raise DataError(f"the SIDs cover {len(sids)} items but the catalog has {n}", where="sids",
                        fix="encode every catalog item, in catalog order")
    return sids
