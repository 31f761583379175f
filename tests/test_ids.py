"""SemanticIds: sequence behaviour, formats, prefixes, 64-bit packing, dedup digit, Arrow tables."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from sidkit.errors import ConfigError, DataError
from sidkit.ids import SemanticIds, bits_per_level, level_letter


def random_ids(n: int = 500, sizes: tuple[int, ...] = (8, 5, 3), seed: int = 0) -> SemanticIds:
    rng = np.random.default_rng(seed)
    codes = np.column_stack([rng.integers(0, size, n) for size in sizes])
    return SemanticIds(codes, sizes)


# ----- constructor ---------------------------------------------------------------------------------

def test_constructor_keeps_codes_and_sizes() -> None:
    ids = SemanticIds(np.array([[1, 2], [0, 3]], dtype=np.int32), [2, 4])  # type: ignore[arg-type]
    assert ids.codes.dtype == np.int64
    assert ids.sizes == (2, 4)
    assert len(ids) == 2 and ids.levels == 2


@pytest.mark.parametrize("codes, sizes", [
    (np.zeros(3, dtype=int), (2,)),            # 1-d
    (np.zeros((3, 2), dtype=int), (2,)),       # levels != sizes
    (np.zeros((3, 1)), (2,)),                  # floats
    (np.array([[2]]), (2,)),                   # out of range
    (np.array([[-1]]), (2,)),                  # negative
    (np.array([[0]]), (0,)),                   # empty codebook
])
def test_constructor_rejects_bad_codes(codes: np.ndarray, sizes: tuple[int, ...]) -> None:
    with pytest.raises(DataError):
        SemanticIds(codes, sizes)


def test_equals() -> None:
    ids = random_ids()
    assert ids.equals(SemanticIds(ids.codes.copy(), ids.sizes))
    assert not ids.equals(SemanticIds(ids.codes, (9, 5, 3)))
    changed = ids.codes.copy()
    changed[0, 0] = (changed[0, 0] + 1) % 8
    assert not ids.equals(SemanticIds(changed, ids.sizes))
    assert not ids.equals(ids.codes)


def test_equality_is_by_value_and_ids_are_not_hashable() -> None:
    ids = random_ids()
    assert ids == SemanticIds(ids.codes.copy(), ids.sizes)
    assert ids != SemanticIds(ids.codes, (9, 5, 3))
    assert ids != random_ids(seed=1)
    assert ids != ids.codes  # an array is not a SemanticIds: a plain False, no elementwise result
    assert (ids == ids.codes) is False
    with pytest.raises(TypeError):
        hash(ids)


def test_len_indexing_slicing_and_iteration_follow_the_rows() -> None:
    ids = random_ids(10)
    assert len(ids) == 10
    assert ids[3] == tuple(int(c) for c in ids.codes[3]) and ids[-1] == tuple(ids.codes[9].tolist())
    assert all(type(code) is int for code in ids[0])
    head = ids[2:5]
    assert isinstance(head, SemanticIds) and head.sizes == ids.sizes and len(head) == 3
    np.testing.assert_array_equal(head.codes, ids.codes[2:5])
    mask = ids.codes[:, 0] % 2 == 0
    np.testing.assert_array_equal(ids[mask].codes, ids.codes[mask])
    np.testing.assert_array_equal(ids[[9, 0, 9]].codes, ids.codes[[9, 0, 9]])
    assert len(ids[[]]) == 0 and ids[[]].sizes == ids.sizes
    assert list(ids) == [tuple(row) for row in ids.codes.tolist()]
    assert [ids[i] for i in range(len(ids))] == list(ids)
    with pytest.raises(IndexError):
        ids[10]
    with pytest.raises(TypeError, match="one index"):
        ids[0, 1]  # type: ignore[call-overload]


def test_numpy_sees_the_codes() -> None:
    ids = random_ids(6)
    array = np.asarray(ids)
    assert array.shape == (6, 3) and array.dtype == np.int64
    np.testing.assert_array_equal(array, ids.codes)
    assert np.asarray(ids, dtype=np.int32).dtype == np.int32
    copied = np.array(ids, copy=True)
    copied[0, 0] += 1
    assert copied[0, 0] != ids.codes[0, 0], "copy=True must not alias the codes"
    assert np.unique(ids, axis=0).shape[1] == 3


def test_repr_is_short_and_shows_some_sids() -> None:
    ids = SemanticIds(np.array([[1, 2], [0, 3]]), (2, 4))
    assert repr(ids) == "SemanticIds(2 items, sizes=(2, 4), [1-2, 0-3])"
    assert repr(random_ids(5000)).startswith("SemanticIds(5,000 items, sizes=(8, 5, 3), [")
    assert repr(random_ids(5000)).endswith(", ...])")


# ----- strings -------------------------------------------------------------------------------------

def test_string_formats() -> None:
    ids = SemanticIds(np.array([[12, 4, 9], [0, 0, 0]]), (16, 8, 10))
    assert ids.to_strings() == ["12-4-9", "0-0-0"]
    assert ids.to_strings(style="tokens") == ["<a_12><b_4><c_9>", "<a_0><b_0><c_0>"]


@pytest.mark.parametrize("style", ["dash", "tokens"])
def test_string_round_trip(style: str) -> None:
    ids = random_ids()
    strings = ids.to_strings(style=style)  # type: ignore[arg-type]
    assert SemanticIds.from_strings(strings, ids.sizes).equals(ids)
    assert SemanticIds.from_strings(strings, ids.sizes, style=style).equals(ids)  # type: ignore[arg-type]


def test_from_strings_detects_style_per_string_and_handles_empty() -> None:
    ids = SemanticIds.from_strings(["1-2", "<a_0><b_3>"], (2, 4))
    assert ids.codes.tolist() == [[1, 2], [0, 3]]
    assert SemanticIds.from_strings([], (2, 4)).codes.shape == (0, 2)


def test_level_letters_go_past_z() -> None:
    assert [level_letter(i) for i in (0, 1, 25, 26, 27, 51, 52)] == ["a", "b", "z", "aa", "ab", "az", "ba"]
    sizes = (2,) * 28
    ids = SemanticIds(np.ones((1, 28), dtype=int), sizes)
    text = ids.to_strings("tokens")[0]
    assert text.endswith("<z_1><aa_1><ab_1>")
    assert SemanticIds.from_strings([text], sizes).equals(ids)


@pytest.mark.parametrize("text, message", [
    ("1-2", "non-negative integers"),             # too few levels
    ("1-2-3-0", "non-negative integers"),         # too many levels
    ("1--3", "non-negative integers"),            # empty part
    ("1-x-3", "non-negative integers"),           # not a number
    ("1-+2-3", "non-negative integers"),          # sign
    (" 1-2-3", "non-negative integers"),          # stray space
    ("1-2-9", "outside [0, 5)"),                  # code too large for its level
    ("<a_1><b_2>", "expected ['a', 'b', 'c']"),   # too few tokens
    ("<a_1><c_2><b_3>", "expected ['a', 'b', 'c']"),  # wrong order
    ("<a_1><b_2><c_>", "<letter_code> tokens"),   # missing code
    ("<a_1><b_2><c_3", "<letter_code> tokens"),   # unclosed
    ("<a_1>x<b_2><c_3>", "<letter_code> tokens"),  # junk between tokens
    ("", "non-negative integers"),                # empty
])
def test_from_strings_errors_name_row_and_form(text: str, message: str) -> None:
    with pytest.raises(DataError, match="row 1") as info:
        SemanticIds.from_strings(["0-0-0", text], (4, 3, 5))
    assert message in str(info.value)


def test_from_strings_rejects_non_strings_and_unknown_style() -> None:
    with pytest.raises(DataError, match="not a string"):
        SemanticIds.from_strings([12], (16,))  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="style"):
        SemanticIds.from_strings(["1"], (2,), style="slash")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="style"):
        random_ids().to_strings(style="slash")  # type: ignore[arg-type]
    with pytest.raises(DataError):
        SemanticIds.from_strings(["<a_1><b_1><c_1>"], (4, 3, 5), style="dash")


# ----- prefixes ------------------------------------------------------------------------------------

def test_prefix() -> None:
    ids = random_ids()
    head = ids.prefix(2)
    assert head.sizes == (8, 5)
    np.testing.assert_array_equal(head.codes, ids.codes[:, :2])
    assert ids.prefix(3).equals(ids)
    for bad in (0, 4, -1, 1.5, True):
        with pytest.raises(ConfigError, match="depth"):
            ids.prefix(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_prefix_keys_one_per_distinct_prefix(depth: int) -> None:
    ids = random_ids(n=2000)
    keys = ids.prefix_keys(depth)
    assert keys.dtype == np.int64 and keys.shape == (len(ids),)
    distinct_prefixes = {tuple(row) for row in ids.codes[:, :depth].tolist()}
    assert len(set(keys.tolist())) == len(distinct_prefixes)
    # Same key <=> same prefix, checked through a map in both directions.
    key_of: dict[tuple[int, ...], int] = {}
    for row, key in zip(ids.codes[:, :depth].tolist(), keys.tolist(), strict=True):
        assert key_of.setdefault(tuple(row), key) == key
    # Mixed radix: keys lie in [0, K_0 * ... * K_{depth-1}) and sort like the prefixes.
    assert keys.min() >= 0 and keys.max() < np.prod(ids.sizes[:depth])
    order = np.lexsort(ids.codes[:, :depth].T[::-1])
    assert np.all(np.diff(keys[order]) >= 0)


def test_prefix_keys_hand_example_and_overflow() -> None:
    ids = SemanticIds(np.array([[1, 2, 3], [0, 4, 0]]), (2, 5, 7))
    # key = (c0 * 5 + c1) * 7 + c2: (1*5 + 2)*7 + 3 = 52, (0*5 + 4)*7 + 0 = 28
    assert ids.prefix_keys().tolist() == [52, 28]
    assert ids.prefix_keys(2).tolist() == [7, 4]
    big = SemanticIds(np.zeros((1, 3), dtype=int), (2**31, 2**31, 4))
    assert big.prefix_keys(2).tolist() == [0]
    with pytest.raises(ConfigError, match="int64"):
        big.prefix_keys(3)


# ----- packing -------------------------------------------------------------------------------------

def test_bits_per_level_is_ceil_log2() -> None:
    assert bits_per_level([1, 2, 3, 4, 5, 256, 257, 4096]) == (0, 1, 2, 2, 3, 8, 9, 12)


@pytest.mark.parametrize("sizes", [(8, 5, 3), (256, 256, 256), (1, 7, 1), (2**32, 2**32), (3,) * 32])
def test_pack_round_trip(sizes: tuple[int, ...]) -> None:
    rng = np.random.default_rng(1)
    codes = np.column_stack([rng.integers(0, size, 300, dtype=np.int64) for size in sizes])
    codes[0] = np.array(sizes) - 1  # the largest code of every level
    ids = SemanticIds(codes, sizes)
    packed = ids.pack()
    assert packed.dtype == np.uint64 and packed.shape == (300,)
    assert SemanticIds.unpack(packed, sizes).equals(ids)
    # Distinct SIDs give distinct packed values, and packed order is SID order.
    assert len(np.unique(packed)) == len(np.unique(codes, axis=0))
    order = np.lexsort(codes.T[::-1])
    ordered = packed[order]
    assert np.all(ordered[1:] >= ordered[:-1])


def test_pack_hand_example() -> None:
    # sizes (4, 3, 5) take 2 + 2 + 3 bits: [1, 2, 3] -> 0b01_10_011 = 51
    ids = SemanticIds(np.array([[1, 2, 3], [0, 0, 1]]), (4, 3, 5))
    assert ids.pack().tolist() == [0b0110011, 1]


def test_pack_overflow_names_bits_needed() -> None:
    ids = SemanticIds(np.zeros((2, 3), dtype=int), (2**30, 2**30, 1000))
    with pytest.raises(ConfigError, match="need 70 bits"):
        ids.pack()
    with pytest.raises(ConfigError, match="need 70 bits"):
        SemanticIds.unpack(np.zeros(2, dtype=np.uint64), ids.sizes)
    assert ids.prefix(2).pack().dtype == np.uint64  # 60 bits fit


def test_unpack_rejects_bad_input() -> None:
    with pytest.raises(DataError, match="more than the 7 bits"):
        SemanticIds.unpack(np.array([1 << 7], dtype=np.uint64), (4, 3, 5))
    with pytest.raises(DataError, match="outside"):  # 3 is not a code of a size-3 level
        SemanticIds.unpack(np.array([0b0011000], dtype=np.uint64), (4, 3, 5))
    with pytest.raises(DataError, match="negative"):
        SemanticIds.unpack(np.array([-1]), (4, 3, 5))
    with pytest.raises(DataError, match="1-d"):
        SemanticIds.unpack(np.zeros((2, 2), dtype=np.uint64), (4, 3, 5))
    with pytest.raises(DataError, match="unsigned"):
        SemanticIds.unpack(np.zeros(2), (4, 3, 5))


# ----- dedup digit ---------------------------------------------------------------------------------

def test_dedup_digit_makes_every_sid_unique() -> None:
    ids = random_ids(n=3000, sizes=(6, 4, 3))
    assert len(np.unique(ids.codes, axis=0)) < len(ids)  # there are collisions to fix
    deduped = ids.with_dedup_digit()
    assert len(np.unique(deduped.codes, axis=0)) == len(ids)
    np.testing.assert_array_equal(deduped.codes[:, :3], ids.codes)
    _, counts = np.unique(ids.codes, axis=0, return_counts=True)
    assert deduped.sizes == (6, 4, 3, int(counts.max()))


def test_dedup_digit_follows_distance_then_item_id() -> None:
    codes = np.array([[1, 2], [1, 2], [0, 0], [1, 2], [1, 2], [0, 0]])
    distances = np.array([0.5, 0.1, 0.3, 0.1, 0.0, 0.3])
    item_ids = np.array([10, 30, 7, 20, 40, 5])
    deduped = SemanticIds(codes, (2, 3)).with_dedup_digit(distances=distances, item_ids=item_ids)
    # Bucket 1-2: rows 4 (d 0.0), then 3 and 1 tie at d 0.1 -> ids 20 < 30, then row 0 (d 0.5).
    # Bucket 0-0: rows 2 and 5 tie at d 0.3 -> ids 5 < 7: row 5 first.
    assert deduped.codes[:, 2].tolist() == [3, 2, 1, 1, 0, 0]
    assert deduped.sizes == (2, 3, 4)


def test_dedup_digit_defaults_and_string_ids() -> None:
    ids = SemanticIds(np.array([[0], [0], [1], [0]]), (2,))
    # No distances, no ids: row order.
    assert ids.with_dedup_digit().codes[:, 1].tolist() == [0, 1, 0, 2]
    # Item ids only, as strings: "a" < "b" < "c".
    by_id = ids.with_dedup_digit(item_ids=np.array(["c", "a", "z", "b"]))
    assert by_id.codes[:, 1].tolist() == [2, 0, 0, 1]
    # Equal distances fall back to item ids.
    tied = ids.with_dedup_digit(distances=np.ones(4), item_ids=np.array([3, 2, 9, 1]))
    assert tied.codes[:, 1].tolist() == [2, 1, 0, 0]


def test_dedup_digit_is_stable_under_row_permutation() -> None:
    ids = random_ids(n=400, sizes=(3, 3))
    rng = np.random.default_rng(5)
    distances = rng.random(400).round(1)  # many ties, so item ids matter
    item_ids = rng.permutation(400)
    digit = ids.with_dedup_digit(distances, item_ids).codes[:, -1]
    perm = rng.permutation(400)
    shuffled = SemanticIds(ids.codes[perm], ids.sizes).with_dedup_digit(distances[perm], item_ids[perm])
    np.testing.assert_array_equal(shuffled.codes[:, -1], digit[perm])


def test_dedup_digit_capacity() -> None:
    ids = SemanticIds(np.array([[0], [0], [0], [1]]), (2,))
    assert ids.with_dedup_digit(max_extra=5).sizes == (2, 5)
    assert ids.with_dedup_digit(max_extra=3).sizes == (2, 3)
    with pytest.raises(ConfigError, match="largest bucket: 3") as info:
        ids.with_dedup_digit(max_extra=2)
    assert "max_extra >= 3" in str(info.value)
    with pytest.raises(ConfigError):
        ids.with_dedup_digit(max_extra=0)


def test_dedup_digit_checks_inputs_and_handles_no_collisions() -> None:
    ids = SemanticIds(np.array([[0], [1]]), (2,))
    assert ids.with_dedup_digit().codes[:, 1].tolist() == [0, 0]
    assert ids.with_dedup_digit().sizes == (2, 1)
    with pytest.raises(DataError, match="distances"):
        ids.with_dedup_digit(distances=np.array([0.1, np.nan]))
    with pytest.raises(DataError, match="distances"):
        ids.with_dedup_digit(distances=np.zeros(3))
    with pytest.raises(DataError, match="item_ids"):
        ids.with_dedup_digit(item_ids=np.array([1]))
    empty = SemanticIds(np.zeros((0, 2), dtype=int), (3, 3)).with_dedup_digit()
    assert empty.codes.shape == (0, 3)


# ----- Arrow tables --------------------------------------------------------------------------------

def test_table_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pyarrow.parquet as pq

    ids = random_ids(n=50)
    item_ids = np.arange(100, 150)
    table = ids.to_table(item_ids=item_ids)
    assert table.column_names == ["item_id", "level_0", "level_1", "level_2"]
    pq.write_table(table, tmp_path / "codes.parquet")
    back = pq.read_table(tmp_path / "codes.parquet")
    assert SemanticIds.from_table(back).equals(ids)
    np.testing.assert_array_equal(back["item_id"].to_numpy(), item_ids)
    assert ids.to_table().column_names == ["level_0", "level_1", "level_2"]


def test_from_table_needs_sizes_and_levels() -> None:
    plain = pa.table({"level_0": [0, 1], "level_1": [2, 0]})
    with pytest.raises(DataError, match="sizes"):
        SemanticIds.from_table(plain)
    assert SemanticIds.from_table(plain, sizes=(2, 3)).codes.tolist() == [[0, 2], [1, 0]]
    with pytest.raises(DataError, match="level_0"):
        SemanticIds.from_table(pa.table({"code": [0]}), sizes=(2,))
