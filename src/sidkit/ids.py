"""SemanticIds: the codes a tokenizer gives each item, with the size of each level.

Besides holding the codes, this module renders them as strings (``"12-4-9"`` or
``"<a_12><b_4><c_9>"``) and parses them back, cuts prefixes, gives integer keys per prefix, packs a
whole SID into one uint64, appends a dedup digit that separates colliding items, and moves codes
to and from Arrow tables (for ``codes.parquet``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, overload

import numpy as np
import pyarrow as pa

from sidkit.data.validation import as_id_array
from sidkit.errors import ConfigError, DataError

Style = Literal["dash", "tokens"]
STYLES: tuple[str, ...] = ("dash", "tokens")
UINT64_BITS = 64
INT64_MAX = (1 << 63) - 1
SIZES_METADATA_KEY = b"sidkit.sizes"

_TOKEN = re.compile(r"<([a-z]+)_([0-9]+)>")
_TOKENS_WHOLE = re.compile(r"(?:<[a-z]+_[0-9]+>)+")
_DIGITS = re.compile(r"[0-9]+")


@dataclass(frozen=True, eq=False, repr=False)
class SemanticIds:
    """Codes of N items over L levels.

    Behaves like a sequence of SIDs: ``len(ids)`` is N; ``ids[i]`` is item i's SID as a tuple of L
    ints; ``ids[2:5]``, ``ids[mask]`` and ``ids[[0, 7]]`` are SemanticIds of those rows (same sizes);
    iterating yields the tuples; ``np.asarray(ids)`` is the (N, L) int64 codes; ``==`` compares by
    value (same sizes and codes), so SemanticIds are not hashable.

    Attributes:
        codes: (N, L) int64, ``codes[i, l]`` in ``[0, sizes[l])``.
        sizes: the codebook size of each level, length L.
    """

    codes: np.ndarray
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        sizes = tuple(int(s) for s in self.sizes)
        if codes.ndim != 2:
            raise DataError(f"codes must be 2-d (items, levels), got shape {codes.shape}", where="codes")
        if codes.shape[1] != len(sizes):
            raise DataError(f"codes have {codes.shape[1]} levels but {len(sizes)} sizes were given",
                            where="sizes", fix="give one codebook size per level")
        if codes.dtype.kind not in "iu":
            raise DataError(f"codes must be integers, got {codes.dtype}", where="codes")
        if any(s < 1 for s in sizes):
            raise DataError(f"codebook sizes must be positive, got {sizes}", where="sizes")
        if codes.dtype == np.uint64 and codes.size and int(codes.max()) > INT64_MAX:
            raise DataError("codes hold values too large for int64", where="codes")
        codes = codes.astype(np.int64, copy=False)
        if codes.size:
            low, high = codes.min(axis=0), codes.max(axis=0)
            for level, size in enumerate(sizes):
                if low[level] < 0 or high[level] >= size:
                    raise DataError(f"level {level} holds codes outside [0, {size})", where="codes",
                                    fix="check that sizes match the tokenizer that made the codes")
        object.__setattr__(self, "codes", codes)
        object.__setattr__(self, "sizes", sizes)

    def __len__(self) -> int:
        return int(self.codes.shape[0])

    @overload
    def __getitem__(self, index: int | np.integer) -> tuple[int, ...]: ...

    @overload
    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> SemanticIds: ...

    def __getitem__(self, index: int | np.integer | slice | Sequence[int] | np.ndarray
                    ) -> tuple[int, ...] | SemanticIds:
        """Item ``index``'s SID as a tuple of ints, or the SemanticIds of a slice, mask or row list."""
        if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"item {index} is out of range for {n} SIDs")
            return tuple(int(code) for code in self.codes[index])
        if isinstance(index, tuple):
            raise TypeError("SemanticIds take one index (rows); for a level use ids.codes[:, level]")
        rows = index if isinstance(index, slice) else np.asarray(index)
        if not isinstance(rows, slice) and rows.dtype.kind not in "biu":
            if rows.size:
                raise TypeError(f"SemanticIds are indexed by ints, slices or boolean masks, not {rows.dtype}")
            rows = rows.astype(np.int64)  # an empty list selects nothing
        return SemanticIds(self.codes[rows].reshape(-1, self.levels), self.sizes)

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        """Each item's SID, a tuple of L ints."""
        for row in self.codes.tolist():
            yield tuple(row)

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        """The (N, L) codes, so ``np.asarray(ids)`` works (a copy only when asked or for another dtype)."""
        if copy:
            return self.codes.astype(dtype or self.codes.dtype, copy=True)
        return self.codes if dtype is None else self.codes.astype(dtype, copy=False)

    def __eq__(self, other: object) -> bool:
        """Equal by value: the same sizes and the same codes, row by row."""
        if not isinstance(other, SemanticIds):
            return NotImplemented
        return self.equals(other)

    __hash__ = None  # type: ignore[assignment]  # equal by value, and the codes array is mutable
    # No ufuncs: ``ids == array`` is then a plain False rather than an elementwise comparison, and
    # arithmetic on codes has to say so (``ids.codes + 1``).
    __array_ufunc__ = None

    def __repr__(self) -> str:
        shown = self.to_strings() if len(self) <= 4 else [*self[:3].to_strings(), "..."]
        return f"SemanticIds({len(self):,} items, sizes={self.sizes}, [{', '.join(shown)}])"

    @property
    def levels(self) -> int:
        return len(self.sizes)

    def equals(self, other: object) -> bool:
        """True when ``other`` is a SemanticIds with the same sizes and the same codes, row by row."""
        return (isinstance(other, SemanticIds) and self.sizes == other.sizes
                and np.array_equal(self.codes, other.codes))

    # ----- strings -----------------------------------------------------------------------------

    def to_strings(self, style: Style = "dash") -> list[str]:
        """Render each item's SID: ``"12-4-9"`` (dash) or ``"<a_12><b_4><c_9>"`` (tokens).

        Returns a list of N strings. Token letters name the level: a, b, ..., z, aa, ab, ...
        """
        _check_style(style)
        rows = self.codes.tolist()
        if style == "dash":
            return ["-".join(map(str, row)) for row in rows]
        letters = [level_letter(level) for level in range(self.levels)]
        return ["".join(f"<{letter}_{code}>" for letter, code in zip(letters, row, strict=True))
                for row in rows]

    @classmethod
    def from_strings(cls, strings: Sequence[str], sizes: Sequence[int],
                     style: Style | None = None) -> SemanticIds:
        """Parse SIDs written by :meth:`to_strings`.

        Args:
            strings: N strings, each ``"12-4-9"`` or ``"<a_12><b_4><c_9>"``.
            sizes: the codebook size of each level, length L.
            style: ``"dash"`` or ``"tokens"``; None detects it per string (tokens start with ``<``).

        Raises:
            DataError: naming the first malformed string, its row, and the expected form.
        """
        if style is not None:
            _check_style(style)
        sizes = tuple(int(s) for s in sizes)
        letters = [level_letter(level) for level in range(len(sizes))]
        codes = np.empty((len(strings), len(sizes)), dtype=np.int64)
        for row, text in enumerate(strings):
            if not isinstance(text, str):
                raise DataError(f"row {row} is {type(text).__name__}, not a string", where="strings")
            row_style = style or ("tokens" if text.startswith("<") else "dash")
            values = (_parse_tokens(text, letters, row) if row_style == "tokens"
                      else _parse_dash(text, len(sizes), row))
            for level, (value, size) in enumerate(zip(values, sizes, strict=True)):
                if value >= size:
                    raise DataError(f"row {row} ({text!r}) has code {value} at level {level}, "
                                    f"outside [0, {size})", where="strings",
                                    fix="pass the sizes of the tokenizer that wrote these SIDs")
            codes[row] = values
        return cls(codes, sizes)

    # ----- prefixes ----------------------------------------------------------------------------

    def prefix(self, depth: int) -> SemanticIds:
        """The first ``depth`` levels: codes (N, depth), sizes ``sizes[:depth]``."""
        depth = self._check_depth(depth)
        return SemanticIds(self.codes[:, :depth], self.sizes[:depth])

    def prefix_keys(self, depth: int | None = None) -> np.ndarray:
        """One int64 per item, equal for two items iff they share the prefix of length ``depth``.

        Mixed radix: ``key = ((c_0 * K_1 + c_1) * K_2 + c_2) ...``, so keys also sort like the
        prefixes. ``depth`` defaults to all levels. Returns (N,) int64.

        Raises:
            ConfigError: when K_0 * ... * K_{depth-1} does not fit in int64.
        """
        depth = self.levels if depth is None else self._check_depth(depth)
        space = _product(self.sizes[:depth])
        if space - 1 > INT64_MAX:
            raise ConfigError(f"prefixes of depth {depth} span {space} values, more than int64 holds",
                              where="depth", fix="use a smaller depth, or pack() when the bits fit in uint64")
        keys = np.zeros(len(self), dtype=np.int64)
        for level in range(depth):
            keys = keys * self.sizes[level] + self.codes[:, level]
        return keys

    def _check_depth(self, depth: int) -> int:
        is_int = isinstance(depth, (int, np.integer)) and not isinstance(depth, bool)
        if not is_int or not 1 <= depth <= self.levels:
            raise ConfigError(f"depth must be an integer in [1, {self.levels}], got {depth!r}", where="depth")
        return int(depth)

    # ----- 64-bit packing ----------------------------------------------------------------------

    @property
    def bits_per_level(self) -> tuple[int, ...]:
        """ceil(log2(K_l)) for each level: the bits one code of that level takes when packed."""
        return bits_per_level(self.sizes)

    def pack(self) -> np.ndarray:
        """Pack each SID into one uint64, level 0 in the highest bits (so packed order = SID order).

        Returns (N,) uint64.

        Raises:
            ConfigError: when the levels need more than 64 bits in all.
        """
        bits = _checked_bits(self.sizes)
        packed = np.zeros(len(self), dtype=np.uint64)
        for level, width in enumerate(bits):
            packed = (packed << np.uint64(width)) | self.codes[:, level].astype(np.uint64)
        return packed

    @classmethod
    def unpack(cls, packed: np.ndarray, sizes: Sequence[int]) -> SemanticIds:
        """Inverse of :meth:`pack`: (N,) unsigned integers and the level sizes -> SemanticIds."""
        sizes = tuple(int(s) for s in sizes)
        bits = _checked_bits(sizes)
        values = np.asarray(packed)
        if values.ndim != 1:
            raise DataError(f"packed SIDs must be 1-d, got shape {values.shape}", where="packed")
        if values.dtype.kind == "i":
            if values.size and values.min() < 0:
                raise DataError("packed SIDs hold negative values", where="packed")
        elif values.dtype.kind != "u":
            raise DataError(f"packed SIDs must be unsigned integers, got {values.dtype}", where="packed")
        values = values.astype(np.uint64)
        total = sum(bits)
        if total < UINT64_BITS and values.size and int(values.max()) >> total:
            raise DataError(f"packed SIDs use more than the {total} bits that sizes {sizes} need",
                            where="packed", fix="pass the sizes that the SIDs were packed with")
        codes = np.empty((len(values), len(sizes)), dtype=np.int64)
        for level in reversed(range(len(sizes))):
            width = np.uint64(bits[level])
            codes[:, level] = (values & ((np.uint64(1) << width) - np.uint64(1))).astype(np.int64)
            values = values >> width
        return cls(codes, sizes)

    # ----- dedup digit -------------------------------------------------------------------------

    def with_dedup_digit(self, distances: np.ndarray | None = None, item_ids: np.ndarray | None = None,
                         max_extra: int | None = None) -> SemanticIds:
        """Append a level that makes every SID unique (TIGER's extra digit).

        Items that share a SID get 0, 1, 2, ... in a stable order: ``distances`` ascending (each
        item's distance to its quantized vector, so the best-fitting item keeps 0), then
        ``item_ids`` ascending, then row order. Items alone in their bucket get 0.

        Args:
            distances: (N,) finite floats, or None to order by item id only.
            item_ids: (N,) int or str, or None to use the row index.
            max_extra: the size allowed for the new level; None uses the largest bucket.

        Returns:
            SemanticIds with codes (N, L + 1), sizes ``sizes + (max_extra or largest bucket,)``.

        Raises:
            ConfigError: when the largest bucket holds more items than ``max_extra``.
        """
        n = len(self)
        _, group, counts = np.unique(self.codes, axis=0, return_inverse=True, return_counts=True)
        group = group.reshape(-1)
        largest = int(counts.max()) if n else 0
        size = max(largest, 1) if max_extra is None else int(max_extra)
        if size < 1:
            raise ConfigError(f"max_extra must be at least 1, got {max_extra}", where="max_extra")
        if largest > size:
            raise ConfigError(f"{int((counts > size).sum())} SIDs are shared by more than {size} items "
                              f"(largest bucket: {largest}), so a dedup digit of size {size} cannot "
                              "separate them", where="max_extra",
                              fix=f"set max_extra >= {largest}, or use a tokenizer with fewer collisions")
        keys: list[np.ndarray] = [np.arange(n)]
        if item_ids is not None:
            ids = as_id_array(item_ids, where="item_ids")
            _check_rows(ids, n, "item_ids")
            keys.insert(0, ids)
        if distances is not None:
            dist = np.asarray(distances, dtype=np.float64)
            _check_rows(dist, n, "distances")
            if not np.all(np.isfinite(dist)):
                raise DataError("distances hold NaN or inf", where="distances",
                                fix="pass finite distances to the quantized vectors")
            keys.insert(0, dist)
        keys.insert(0, group)
        # np.lexsort sorts by its last key first, so reverse: group, distance, item id, row.
        order = np.lexsort(tuple(reversed(keys)))
        sorted_group = group[order]
        starts = np.flatnonzero(np.r_[True, sorted_group[1:] != sorted_group[:-1]]) if n else np.empty(0, int)
        run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
        digit = np.empty(n, dtype=np.int64)
        digit[order] = np.arange(n) - run_start
        return SemanticIds(np.column_stack([self.codes, digit]), (*self.sizes, size))

    # ----- Arrow tables ------------------------------------------------------------------------

    def to_table(self, item_ids: np.ndarray | None = None) -> pa.Table:
        """An Arrow table: optional ``item_id`` then int64 columns ``level_0 .. level_{L-1}``.

        The sizes are kept in the schema metadata (``sidkit.sizes``), so :meth:`from_table` can
        restore them from a parquet file.
        """
        columns: dict[str, np.ndarray] = {}
        if item_ids is not None:
            ids = as_id_array(item_ids, where="item_ids")
            _check_rows(ids, len(self), "item_ids")
            columns["item_id"] = ids
        for level in range(self.levels):
            columns[f"level_{level}"] = self.codes[:, level]
        table = pa.table(columns)
        return table.replace_schema_metadata({SIZES_METADATA_KEY: json.dumps(list(self.sizes)).encode()})

    @classmethod
    def from_table(cls, table: pa.Table, sizes: Sequence[int] | None = None) -> SemanticIds:
        """Read codes from columns ``level_0, level_1, ...``; sizes from the argument or the metadata.

        An ``item_id`` column, if present, is left in the table (``table["item_id"]``).
        """
        levels = 0
        while f"level_{levels}" in table.column_names:
            levels += 1
        if levels == 0:
            raise DataError(f"no level_0 column; the table has {table.column_names}", where="table",
                            fix="write codes with SemanticIds.to_table()")
        if sizes is None:
            metadata = table.schema.metadata or {}
            if SIZES_METADATA_KEY not in metadata:
                raise DataError("the table does not record codebook sizes", where="table",
                                fix="pass sizes=... explicitly")
            sizes = json.loads(metadata[SIZES_METADATA_KEY])
        codes = np.column_stack([table.column(f"level_{level}").to_numpy() for level in range(levels)])
        return cls(codes.reshape(table.num_rows, levels), tuple(sizes))


def level_letter(level: int) -> str:
    """Letters that name a level in the token style: 0 -> a, 25 -> z, 26 -> aa, 27 -> ab, ..."""
    letters = ""
    level += 1
    while level:
        level, rest = divmod(level - 1, 26)
        letters = chr(ord("a") + rest) + letters
    return letters


def bits_per_level(sizes: Sequence[int]) -> tuple[int, ...]:
    """ceil(log2(K)) for each size K (0 bits for K = 1)."""
    return tuple((int(size) - 1).bit_length() for size in sizes)


def _checked_bits(sizes: Sequence[int]) -> tuple[int, ...]:
    bits = bits_per_level(sizes)
    if sum(bits) > UINT64_BITS:
        raise ConfigError(f"sizes {tuple(sizes)} need {sum(bits)} bits ({' + '.join(map(str, bits))}), "
                          f"more than the {UINT64_BITS} of a uint64", where="sizes",
                          fix="pack a prefix (ids.prefix(depth).pack()), or use prefix_keys / to_table")
    return bits


def _product(values: Sequence[int]) -> int:
    result = 1
    for value in values:
        result *= int(value)
    return result


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ConfigError(f"unknown SID style {style!r}", where="style", fix=f"use one of {STYLES}")


def _check_rows(array: np.ndarray, n: int, where: str) -> None:
    if array.shape != (n,):
        raise DataError(f"expected shape ({n},), one value per item, got {array.shape}", where=where)


def _parse_dash(text: str, levels: int, row: int) -> list[int]:
    parts = text.split("-")
    if len(parts) != levels or not all(_DIGITS.fullmatch(part) for part in parts):
        raise DataError(f"row {row} ({text!r}) is not {levels} non-negative integers joined by '-'",
                        where="strings", fix=f"write SIDs like {'-'.join(['3'] * levels)!r}")
    return [int(part) for part in parts]


def _parse_tokens(text: str, letters: list[str], row: int) -> list[int]:
    example = "".join(f"<{letter}_3>" for letter in letters)
    if not _TOKENS_WHOLE.fullmatch(text):
        raise DataError(f"row {row} ({text!r}) is not a sequence of <letter_code> tokens",
                        where="strings", fix=f"write SIDs like {example!r}")
    tokens = _TOKEN.findall(text)
    found = [letter for letter, _ in tokens]
    if found != letters:
        raise DataError(f"row {row} ({text!r}) has levels {found}, expected {letters}", where="strings",
                        fix=f"write SIDs like {example!r}")
    return [int(code) for _, code in tokens]
