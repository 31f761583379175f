"""Stability between two codings: label-invariant prefix agreement, AMI, and neighbour overlap."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.diagnostics.stability import (
    adjusted_mutual_information,
    neighbour_overlap,
    prefix_agreement,
    stability,
    tokenizer_stability,
)
from sidkit.errors import ConfigError, DataError
from sidkit.ids import SemanticIds
from sidkit.tokenizers.base import load_tokenizer
from sidkit.tokenizers.rq_kmeans import RQKMeans


def relabel(codes: np.ndarray, sizes, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    perms = [rng.permutation(size) for size in sizes]
    return np.stack([perms[level][codes[:, level]] for level in range(codes.shape[1])], axis=1)


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(1500, 12)) + 3 * rng.normal(size=(12, 12))[rng.integers(0, 12, 1500)]).astype(np.float32)
    return x, RQKMeans(levels=3, codebook_size=8, seed=0).fit(x)


def test_a_tokenizer_against_itself_with_permuted_code_labels_is_fully_stable(fitted, tmp_path):
    x, tokenizer = fitted
    tokenizer.save(tmp_path / "model")
    permuted = load_tokenizer(tmp_path / "model")
    rng = np.random.default_rng(1)
    permuted.codebooks = [book[rng.permutation(len(book))] for book in permuted.codebooks]
    assert not np.array_equal(permuted.encode(x).codes, tokenizer.encode(x).codes)
    report = tokenizer_stability(tokenizer, permuted, x, neighbours=10, queries=500)
    assert report.prefix_agreement == (1.0, 1.0, 1.0)
    assert report.ami == pytest.approx((1.0, 1.0, 1.0))
    assert report.neighbour_overlap == 1.0
    assert report.queries == 500 and report.num_items == len(x)


def test_prefix_agreement_is_label_invariant_and_counts_disagreements():
    rng = np.random.default_rng(0)
    sizes = (6, 5, 4)
    codes = rng.integers(0, 4, size=(2000, 3))
    ids = SemanticIds(codes, sizes)
    assert prefix_agreement(ids, SemanticIds(relabel(codes, sizes, 3), sizes)) == (1.0, 1.0, 1.0)
    changed = codes.copy()
    changed[:200, 1] = (changed[:200, 1] + 1) % 4  # 10% disagree from depth 2 on
    shares = prefix_agreement(ids, SemanticIds(relabel(changed, sizes, 4), sizes))
    assert shares == pytest.approx((1.0, 0.9, 0.9))


def test_deeper_codes_are_matched_within_each_parent():
    # Level-1 labels are permuted differently under each level-0 code: still the same trie.
    codes = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 10)
    other = codes.copy()
    other[codes[:, 0] == 1, 1] = 1 - codes[codes[:, 0] == 1, 1]
    assert prefix_agreement(SemanticIds(codes, (2, 2)), SemanticIds(other, (2, 2))) == (1.0, 1.0)


def test_ami_matches_a_reference_and_is_near_zero_for_independent_codes():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, 3000)
    b = np.where(rng.random(3000) < 0.4, a, rng.integers(0, 25, 3000))
    assert adjusted_mutual_information(a, b) == pytest.approx(metrics.adjusted_mutual_info_score(a, b), abs=1e-10)
    independent = adjusted_mutual_information(rng.integers(0, 16, 3000), rng.integers(0, 16, 3000))
    assert abs(independent) < 0.01
    assert adjusted_mutual_information(a, (a + 3) % 20) == pytest.approx(1.0)
    assert adjusted_mutual_information(np.zeros(5, int), np.ones(5, int)) == 1.0


def test_neighbour_overlap_of_unrelated_spaces_is_low():
    rng = np.random.default_rng(0)
    value, used = neighbour_overlap(rng.normal(size=(400, 8)), rng.normal(size=(400, 3)), neighbours=10, queries=100)
    assert used == 100
    assert value < 0.15  # chance level is 10 / 399


def test_errors(fitted):
    x, tokenizer = fitted
    ids = tokenizer.encode(x)
    with pytest.raises(DataError, match="same items"):
        stability(ids, SemanticIds(ids.codes[:10], ids.sizes), x, x[:10])
    with pytest.raises(ConfigError, match="neighbours"):
        neighbour_overlap(x, x, neighbours=len(x))
    with pytest.raises(DataError, match="same items"):
        neighbour_overlap(x, x[:10])
    with pytest.raises(ConfigError, match="levels"):
        tokenizer_stability(tokenizer, RQKMeans(levels=2, codebook_size=8).fit(x), x)
    with pytest.raises(DataError, match="one length"):
        adjusted_mutual_information(np.zeros(3, int), np.zeros(4, int))
