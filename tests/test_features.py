"""Item representations: table sizes, exact vs hashed rows, determinism across processes, SPM hygiene."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from sidkit.errors import ConfigError, DataError
from sidkit.features.hashing import field_salt, hash_rows, splitmix64, stable_keys
from sidkit.features.representations import (
    REPRESENTATIONS,
    build_representation,
    natural_size,
    parse_representation,
    split_budget,
)
from sidkit.ids import SemanticIds

TABLE_NAMES = ("hash", "sid-unigram", "sid-bigram", "sid-prefix", "sid-spm")


def make_inputs(n: int = 500, sizes: tuple[int, ...] = (16, 16, 16), seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = np.column_stack([rng.integers(0, k, n) for k in sizes])
    codes[:, 1] = (codes[:, 0] + rng.integers(0, 3, n)) % sizes[1]  # some structure for SPM to merge
    ids = rng.permutation(n) + 1000
    embeddings = rng.normal(size=(n, 8)).astype(np.float32)
    train = rng.random(n) < 0.8
    return ids, SemanticIds(codes, sizes), embeddings, train


def test_splitmix64_is_the_reference_function():
    # splitmix64 with state 0 yields 0xE220A8397B1DCDAF as its first output (Vigna's reference code).
    assert int(splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF
    keys = np.arange(10_000, dtype=np.uint64)
    assert len(np.unique(splitmix64(keys))) == len(keys)  # a bijection


def test_hash_rows_range_and_salt():
    keys = np.arange(5_000)
    a = hash_rows(keys, buckets=97, salt=field_salt(0, "x"))
    b = hash_rows(keys, buckets=97, salt=field_salt(0, "y"))
    assert a.min() >= 0 and a.max() < 97
    assert np.mean(a == b) < 0.05  # another field lands on independent rows
    counts = np.bincount(a, minlength=97)
    assert counts.min() > 0.5 * counts.mean()  # roughly uniform


def test_stable_keys_strings_and_ints():
    assert np.array_equal(stable_keys(np.array([3, 7])), np.array([3, 7], dtype=np.uint64))
    keys = stable_keys(np.array(["a", "b", "a"], dtype=object))
    assert keys[0] == keys[2] and keys[0] != keys[1]


@pytest.mark.parametrize("name", TABLE_NAMES)
@pytest.mark.parametrize("budget", [40, 300, 5_000])
def test_table_size_equals_budget(name, budget):
    ids, sids, emb, train = make_inputs()
    if name == "sid-spm":
        pytest.importorskip("sentencepiece")
        if budget <= 48:  # the vocabulary must hold the 3 x 16 symbols and <unk>
            with pytest.raises(ConfigError, match="at least 49"):
                build_representation(name, item_ids=ids, sids=sids, budget=budget, train_items=train)
            return
    rep = build_representation(name, item_ids=ids, sids=sids, embeddings=emb, budget=budget, train_items=train)
    assert rep.num_embeddings == budget + 1
    assert rep.budget == budget
    assert rep.tokens.shape[0] == len(ids) + 1
    assert np.all(rep.tokens[-1] == 0)
    assert np.all(rep.tokens[:-1].max(axis=1) >= 1)  # every item has at least one real row
    assert rep.param_count(8) == (budget + 1) * 8


def test_combination_splits_the_budget_and_offsets_components():
    pytest.importorskip("sentencepiece")
    ids, sids, _, train = make_inputs()
    # 200 rows in all: 67 + 67 + 66, so the combination is size-matched with each single feature.
    shares = {"hash": 67, "sid-prefix": 67, "sid-spm": 66}
    parts = {name: build_representation(name, item_ids=ids, sids=sids, budget=rows, train_items=train)
             for name, rows in shares.items()}
    combo = build_representation("hash+sid-prefix+sid-spm", item_ids=ids, sids=sids, budget=200,
                                 train_items=train)
    assert combo.num_embeddings == 200 + 1 and combo.table_rows == 200
    assert combo.budget == 200
    assert split_budget(200, 3) == [67, 67, 66] and split_budget(None, 2) is None
    with pytest.raises(ConfigError, match="at least 3"):
        split_budget(2, 3)
    offset = 0
    start = 0
    for name in ("hash", "sid-prefix", "sid-spm"):
        part = parts[name]
        width = part.tokens.shape[1]
        block = combo.tokens[:, start:start + width]
        expected = np.where(part.tokens > 0, part.tokens + offset, 0)
        assert np.array_equal(block, expected), name
        start += width
        offset += part.num_embeddings - 1


def test_hash_below_the_catalog_size_collides_differently_per_seed():
    ids = np.arange(1000) * 7 + 3
    exact = build_representation("hash", item_ids=ids, budget=4096, seed=0)
    # At a budget of at least the catalog size every item has its own row: no collision, seed or not.
    assert exact.rows_used == 1000 and exact.table_rows == 4096
    other = build_representation("hash", item_ids=ids, budget=4096, seed=1)
    assert np.array_equal(exact.tokens[:-1, 0], other.tokens[:-1, 0])
    quarter = [build_representation("hash", item_ids=ids, budget=250, seed=seed).tokens[:-1, 0] for seed in (0, 1)]
    for rows in quarter:
        assert rows.min() >= 1 and rows.max() <= 250
        counts = np.bincount(rows)
        assert (counts > 1).sum() > 100  # 4 items per row on average: collisions everywhere
    assert not np.array_equal(quarter[0], quarter[1])  # the seed draws the collisions
    same_row = quarter[0][:, None] == quarter[0][None, :]
    other_seed = quarter[1][:, None] == quarter[1][None, :]
    # Items that share a row under seed 0 mostly do not under seed 1 (independent hashes: ~1/250 do).
    shared = same_row & ~np.eye(1000, dtype=bool)
    assert other_seed[shared].mean() < 0.05
    rep = build_representation("hash", item_ids=ids, budget=250, seed=0)
    assert rep.rows_used == len(np.unique(quarter[0])) and rep.rows_used <= 250


def test_dense_and_combination_with_dense():
    ids, sids, emb, _ = make_inputs()
    dense = build_representation("dense", item_ids=ids, embeddings=emb)
    assert dense.num_embeddings == 1 and np.all(dense.tokens == 0)
    assert dense.dense is not None and dense.dense.shape == (len(ids) + 1, 8)
    assert np.allclose(dense.dense[:-1], emb) and np.all(dense.dense[-1] == 0)
    assert dense.param_count(4) == 4 + 8 * 4 + 4
    combo = build_representation("dense+sid-unigram", item_ids=ids, sids=sids, embeddings=emb, budget=64)
    assert combo.num_embeddings == 65 and combo.dense is not None  # dense takes no share of the rows
    assert combo.tokens.shape[1] == 3  # the dense part adds no token column


def test_exact_rows_when_the_key_space_fits():
    ids, sids, _, _ = make_inputs()
    uni = build_representation("sid-unigram", item_ids=ids, sids=sids, budget=48)
    # 3 x 16 symbols in 48 rows: each (level, code) has its own row, levels in disjoint blocks.
    for level in range(3):
        column = uni.tokens[:-1, level]
        assert len(np.unique(column)) == len(np.unique(sids.codes[:, level]))
        assert np.array_equal(column - column.min(), sids.codes[:, level] - sids.codes[:, level].min())
    hashed = build_representation("hash", item_ids=ids, budget=len(ids))
    assert len(np.unique(hashed.tokens[:-1])) == len(ids)  # one row per item when N fits
    small = build_representation("hash", item_ids=ids, budget=50)
    assert len(np.unique(small.tokens[:-1])) <= 50


def test_prefix_water_filling_and_shared_prefixes():
    ids, sids, _, _ = make_inputs()
    rep = build_representation("sid-prefix", item_ids=ids, sids=sids, budget=256)
    # Depth 1 (16 keys) fits its fair share of 256 rows: exact rows 1..16; deeper depths hash above them.
    assert np.array_equal(rep.tokens[:-1, 0], sids.codes[:, 0] + 1)
    assert rep.tokens[:-1, 1:].min() > 16
    for depth in range(1, 4):
        keys = sids.prefix_keys(depth)
        column = rep.tokens[:-1, depth - 1]
        # Items sharing a prefix share its row (hashing is a function of the prefix).
        for key in np.unique(keys)[:20]:
            assert len(np.unique(column[keys == key])) == 1
    assert natural_size("sid-prefix", num_items=len(ids), sids=sids) == 16 + 256 + 4096
    assert natural_size("sid-unigram", num_items=len(ids), sids=sids) == 48
    assert natural_size("hash+sid-bigram", num_items=len(ids), sids=sids) == len(ids) + 256 + 16


def test_bigram_pairs_and_hashing_when_k_squared_is_larger():
    ids, sids, _, _ = make_inputs(sizes=(16, 16, 16, 16, 8))
    rep = build_representation("sid-bigram", item_ids=ids, sids=sids, budget=100)
    assert rep.tokens.shape[1] == 3  # (c1,c2), (c3,c4), (c5)
    exact = build_representation("sid-bigram", item_ids=ids, sids=sids)
    assert exact.num_embeddings == 256 + 256 + 8 + 1
    pair = sids.codes[:, 0] * 16 + sids.codes[:, 1]
    assert len(np.unique(exact.tokens[:-1, 0])) == len(np.unique(pair))


def test_sid_spm_never_sees_heldout_items():
    pytest.importorskip("sentencepiece")
    from sidkit.features.spm import sid_strings, train_sid_spm

    rng = np.random.default_rng(1)
    n, sizes = 400, (8, 8, 8)
    codes = rng.integers(0, 8, (n, 3))
    heldout = np.zeros(n, dtype=bool)
    heldout[:100] = True
    codes[:100] = [7, 7, 7]  # a pattern only held-out items have: seen, BPE would merge it first
    codes[100:, 0] = rng.integers(0, 7, n - 100)
    sids = SemanticIds(codes, sizes)
    model = train_sid_spm(sids, ~heldout, vocab_size=200)
    training_text = "\n".join(s for s, keep in zip(sid_strings(sids), ~heldout, strict=True) if keep)
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_proto=model.model)
    multi = [processor.id_to_piece(i) for i in range(1, processor.get_piece_size())
             if len(processor.id_to_piece(i)) > 1]
    assert multi, "BPE learnt no merges"
    assert all(piece in training_text for piece in multi)  # every merge comes from training SIDs
    # Held-out items still split into their own symbols, never <unk>.
    pieces = model.encode(sids)
    assert all(len(p) == 3 and np.all(p != 0) for p in pieces[:100])
    assert model.num_pieces <= 200
    assert model.pieces()[0] == "<unk>"


def test_hashing_and_spm_are_deterministic_across_processes():
    code = """
import json, numpy as np
from sidkit.ids import SemanticIds
from sidkit.features.representations import build_representation
rng = np.random.default_rng(0)
n = 300
codes = np.column_stack([rng.integers(0, 16, n) for _ in range(3)])
sids = SemanticIds(codes, (16, 16, 16))
ids = np.array([f"item-{i}" for i in range(n)], dtype=object)
names = ["hash", "sid-prefix", "sid-bigram"]
try:
    import sentencepiece  # noqa: F401
    names.append("sid-spm")
except ImportError:
    pass
out = {name: build_representation(name, item_ids=ids, sids=sids, budget=120, seed=7,
                                   train_items=np.arange(n) % 3 != 0).tokens.tolist() for name in names}
print(json.dumps(out))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONHASHSEED": "123"})
    other = json.loads(result.stdout)
    local = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "999"})
    assert json.loads(local.stdout) == other
    # And in this process, against the other processes.
    rng = np.random.default_rng(0)
    n = 300
    sids = SemanticIds(np.column_stack([rng.integers(0, 16, n) for _ in range(3)]), (16, 16, 16))
    ids = np.array([f"item-{i}" for i in range(n)], dtype=object)
    for name, tokens in other.items():
        rep = build_representation(name, item_ids=ids, sids=sids, budget=120, seed=7,
                                   train_items=np.arange(n) % 3 != 0)
        assert rep.tokens.tolist() == tokens, name
    another_seed = build_representation("hash", item_ids=ids, budget=120, seed=8)
    assert another_seed.tokens.tolist() != other["hash"]


def test_errors_say_what_and_how_to_fix():
    ids, sids, emb, train = make_inputs()
    with pytest.raises(ConfigError) as error:
        build_representation("sid-trigram", item_ids=ids, sids=sids, budget=10)
    assert all(name in str(error.value) for name in REPRESENTATIONS)
    with pytest.raises(ConfigError):
        parse_representation("hash+hash")
    short = SemanticIds(sids.codes[:-3], sids.sizes)
    with pytest.raises(DataError, match="cover 497 items but the catalog has 500"):
        build_representation("sid-prefix", item_ids=ids, sids=short, budget=10)
    with pytest.raises(ConfigError, match="needs Semantic IDs"):
        build_representation("sid-unigram", item_ids=ids, budget=10)
    with pytest.raises(ConfigError, match="budget"):
        build_representation("hash", item_ids=ids, budget=0)
    with pytest.raises(ConfigError, match="embeddings"):
        build_representation("dense", item_ids=ids)
    with pytest.raises(DataError):
        build_representation("dense", item_ids=ids, embeddings=emb[:-1])
    with pytest.raises(ConfigError, match="train_items"):
        build_representation("sid-spm", item_ids=ids, sids=sids, budget=100)
    with pytest.raises(ConfigError, match="sid-spm needs a budget"):
        build_representation("sid-spm", item_ids=ids, sids=sids, train_items=train)
    pytest.importorskip("sentencepiece")
    with pytest.raises(ConfigError, match="at least 49"):
        build_representation("sid-spm", item_ids=ids, sids=sids, budget=48, train_items=train)
    with pytest.raises(DataError, match="train_items"):
        build_representation("sid-spm", item_ids=ids, sids=sids, budget=100, train_items=train[:-1])
