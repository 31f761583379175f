"""The O_pi estimator against exact answers: constructed noise models, a brute-force pair count, and
the jackknife standard error against the spread of repeated estimates."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from sidkit.diagnostics.overlap_counts import OverlapCounts
from sidkit.diagnostics.overlap_reference import (
    CASES,
    coincident_model,
    disjoint_model,
    infinite_noise_model,
    singleton_model,
)
from sidkit.errors import ConfigError, DataError


@functools.cache
def case(name: str):
    """A constructed case and its exact answer, built once per session."""
    model = CASES[name]()
    return model, model.exact()


def estimate(model, samples: int, seed: int = 0, chunks: int = 3):
    target = model.draw(samples, seed)
    counts = OverlapCounts(samples)
    order = np.random.default_rng(seed + 100).permutation(len(model.symbols))  # items in any order
    for part in np.array_split(order, chunks):
        counts.add(model.symbols[part], target[:, part])
    return counts.estimate()


def brute_force_size(symbols: np.ndarray, target: np.ndarray) -> float:
    """K_eff by enumerating every pair of (item, draw): the unbiased pair averages, then the ratio."""
    samples, n = target.shape
    agree = same_agree = 0.0
    for i, j in itertools.product(range(n), repeat=2):
        if i == j:
            pairs = [(s, t) for s in range(samples) for t in range(samples) if s != t]
        else:
            pairs = list(itertools.product(range(samples), repeat=2))
        hits = np.mean([target[s, i] == target[t, j] for s, t in pairs])
        agree += hits
        same_agree += hits if symbols[i] == symbols[j] else 0.0
    _, counts = np.unique(symbols, return_counts=True)
    simpson = float(((counts / n) ** 2).sum())
    return same_agree / (simpson * agree)


def test_estimate_equals_a_brute_force_count_of_pairs():
    rng = np.random.default_rng(0)
    symbols = rng.integers(0, 5, 30)
    target = np.where(rng.random((4, 30)) < 0.5, symbols, rng.integers(0, 9, (4, 30)))
    counts = OverlapCounts(4).add(symbols[:12], target[:, :12]).add(symbols[12:], target[:, 12:])
    got = counts.estimate()
    assert got.effective_size == pytest.approx(brute_force_size(symbols, target), rel=1e-12)
    assert got.flip_rate == pytest.approx(float((target != symbols).mean()))
    assert got.usage == pytest.approx(np.bincount(symbols, minlength=5) / 30)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("samples", [4, 8, 32])
def test_constructed_cases_within_five_percent_and_the_reported_error(name, samples):
    model, exact = case(name)
    got = estimate(model, samples)
    # The default-settings promise: within 5% of the S -> infinity value, or within three standard
    # errors where the case is noisy at few draws (infinite noise on a prefix per item).
    tolerance = max(0.05 * exact.effective_size, 3 * got.effective_size_se)
    assert abs(got.effective_size - exact.effective_size) <= tolerance, (got, exact)
    assert abs(got.flip_rate - exact.flip_rate) <= max(3 * got.flip_rate_se, 1e-12)
    assert 1.0 <= got.effective_size <= exact.inverse_simpson * (1 + 1e-12)


def test_exact_answers_of_the_constructed_cases():
    assert disjoint_model(codes=64).exact().effective_size == pytest.approx(64.0)
    assert coincident_model(codes=64).exact().effective_size == pytest.approx(32.0)
    assert infinite_noise_model(items=300).exact().effective_size == pytest.approx(1.0)
    assert infinite_noise_model(items=300, codes=16).exact().effective_size == pytest.approx(1.0)
    single = singleton_model(items=500)
    assert 1.0 < single.exact().effective_size < 500
    # The Bhattacharyya form reads far more overlap than agreement on the same rows.
    assert single.exact_bhattacharyya_size() < single.exact().effective_size


@pytest.mark.parametrize("name", list(CASES))
def test_default_settings_bias_is_small(name):
    """Mean of 12 estimates at the default 8 draws: the bias, with its own error, is within 2%."""
    model, answer = case(name)
    exact = answer.effective_size
    values = np.array([estimate(model, 8, seed).effective_size for seed in range(12)])
    assert abs(values.mean() - exact) <= max(0.02 * exact, 3 * values.std(ddof=1) / np.sqrt(12)), values


def test_disjoint_codes_are_exact_at_any_draws():
    model = disjoint_model()
    for samples in (3, 8):
        got = estimate(model, samples)
        assert got.effective_size == pytest.approx(64.0, rel=1e-12)
        assert got.effective_size_se == pytest.approx(0.0, abs=1e-9)


def test_jackknife_error_matches_the_spread_of_repeated_estimates():
    model = singleton_model(items=800, stay=0.5)
    runs = [estimate(model, 8, seed) for seed in range(30)]
    spread = np.std([run.effective_size for run in runs], ddof=1)
    reported = np.mean([run.effective_size_se for run in runs])
    assert 0.6 < reported / spread < 1.6, (reported, spread)
    flips = np.std([run.flip_rate for run in runs], ddof=1)
    assert 0.6 < np.mean([run.flip_rate_se for run in runs]) / flips < 1.6


def test_merge_equals_one_pass_in_any_order():
    model = singleton_model(items=400, stay=0.4)
    target = model.draw(6, 1)
    whole = OverlapCounts(6).add(model.symbols, target).estimate()
    parts = [OverlapCounts(6).add(model.symbols[rows], target[:, rows])
             for rows in np.array_split(np.arange(400), 4)]
    merged = parts[3].merge(parts[0]).merge(parts[2]).merge(parts[1]).estimate()
    assert merged.effective_size == pytest.approx(whole.effective_size, rel=1e-12)
    assert merged.effective_size_se == pytest.approx(whole.effective_size_se, rel=1e-9)
    assert merged.flip_rate == whole.flip_rate


def test_many_small_chunks_merge_their_pending_tables(monkeypatch):
    import sidkit.diagnostics.overlap_counts as module

    monkeypatch.setattr(module, "_MIN_MERGE", 1)
    model = singleton_model(items=300, stay=0.3)
    target = model.draw(5, 2)
    whole = OverlapCounts(5).add(model.symbols, target).estimate()
    chunked = OverlapCounts(5)
    for rows in np.array_split(np.arange(300), 70):
        chunked.add(model.symbols[rows], target[:, rows])
    assert chunked.estimate().effective_size == pytest.approx(whole.effective_size, rel=1e-12)


def test_keys_beyond_the_packed_range_take_the_general_path():
    rng = np.random.default_rng(0)
    symbols = rng.integers(0, 6, 200)
    target = np.where(rng.random((4, 200)) < 0.6, symbols, rng.integers(0, 9, (4, 200)))
    small = OverlapCounts(4).add(symbols, target).estimate()
    shift = np.int64(1) << 61  # span^2 no longer fits in one int64 key
    large = OverlapCounts(4).add(symbols + shift, target + shift).estimate()
    assert large.effective_size == pytest.approx(small.effective_size, rel=1e-12)


def test_errors_say_what_and_how():
    with pytest.raises(ConfigError, match="samples must be an integer >= 3"):
        OverlapCounts(2)
    with pytest.raises(ConfigError, match="groups"):
        OverlapCounts(8, groups=1)
    counts = OverlapCounts(4)
    with pytest.raises(DataError, match="one row per draw"):
        counts.add(np.zeros(5, dtype=np.int64), np.zeros((3, 5), dtype=np.int64))
    with pytest.raises(DataError, match="no items"):
        counts.estimate()
    counts.add(np.zeros(5, dtype=np.int64), np.zeros((4, 5), dtype=np.int64)).estimate()
    with pytest.raises(Exception, match="already estimated"):
        counts.add(np.zeros(5, dtype=np.int64), np.zeros((4, 5), dtype=np.int64))
    with pytest.raises(DataError, match="cannot merge"):
        OverlapCounts(4).merge(OverlapCounts(5))
