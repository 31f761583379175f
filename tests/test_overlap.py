"""O_pi, K_eff and the penalties: every property docs/diagnostics.md states, on arrays and on tokenizers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from sidkit.diagnostics.overlap import (
    _ConfusionCounter,
    analytic_expected_overlap,
    analytic_overlap,
    analytic_sweep,
    codeword_overlap,
    expected_overlap,
    level_codebooks,
    noise_sigma,
    overlap_from_confusion,
    overlap_from_omega,
    overlap_sweep,
)
from sidkit.errors import ConfigError, DataError
from sidkit.tokenizers.rq_kmeans import RQKMeans


def random_confusion(rng: np.random.Generator, rows: int, cols: int, zeros: float = 0.5) -> np.ndarray:
    m = rng.random((rows, cols)) * (rng.random((rows, cols)) > zeros)
    m[np.arange(rows), np.arange(rows)] += 1.0  # every row has mass
    return m / m.sum(axis=1, keepdims=True)


def mixture(n: int, k: int, dim: int, *, separation: float, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, dim)) * separation
    labels = rng.integers(0, k, n)
    x = centers[labels] + rng.normal(size=(n, dim)) * spread
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def clustered():
    """A well-separated mixture and a 2-level RQ-KMeans fitted on it."""
    x = mixture(3000, 16, 8, separation=1.0, spread=0.15, seed=1)
    return x, RQKMeans(levels=2, codebook_size=16, seed=0).fit(x)


# ----- array level: the identities -------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_one_pass_equals_explicit_omega(seed):
    rng = np.random.default_rng(seed)
    m = random_confusion(rng, 12, 20)
    pi = rng.random(12) ** 3
    omega = codeword_overlap(m)
    assert np.allclose(np.diag(omega), 1.0)
    assert np.allclose(omega, omega.T)
    one_pass = overlap_from_confusion(m, pi)
    explicit = overlap_from_omega(omega, pi)
    assert one_pass.overlap == pytest.approx(explicit.overlap, rel=1e-12)
    # The sparse form gives the same number.
    assert overlap_from_confusion(sp.csr_array(m), pi).overlap == pytest.approx(one_pass.overlap, rel=1e-12)
    assert codeword_overlap(sp.csr_matrix(m)) == pytest.approx(omega)


@pytest.mark.parametrize("seed", range(5))
def test_penalties_add_up_and_bounds_hold(seed):
    rng = np.random.default_rng(seed)
    k = 10
    result = overlap_from_confusion(random_confusion(rng, k, k), rng.random(k))
    assert result.overlap == pytest.approx(1 / k + result.distribution_penalty + result.geometry_penalty)
    assert result.distribution_penalty >= 0 and result.geometry_penalty >= 0
    assert result.effective_size <= result.nominal_size
    assert result.effective_size == pytest.approx(1 / result.overlap)
    assert result.distribution_factor * result.geometry_factor == pytest.approx(k / result.effective_size)


def test_identity_confusion_gives_inverse_simpson_and_no_geometry_penalty():
    pi = np.array([5, 3, 1, 1], dtype=float)
    result = overlap_from_confusion(np.eye(4), pi)
    share = pi / pi.sum()
    assert result.geometry_penalty == pytest.approx(0.0, abs=1e-15)
    assert result.effective_size == pytest.approx(1 / (share @ share))


def test_uniform_usage_has_no_distribution_penalty():
    rng = np.random.default_rng(0)
    result = overlap_from_confusion(random_confusion(rng, 8, 8), np.ones(8))
    assert result.distribution_penalty == pytest.approx(0.0, abs=1e-15)
    assert result.distribution_factor == pytest.approx(1.0)
    centroids = rng.normal(size=(8, 3))
    assert analytic_overlap(centroids, np.full(8, 0.125), 0.7).distribution_penalty == pytest.approx(0.0, abs=1e-15)


def test_counts_work_as_usage():
    rng = np.random.default_rng(0)
    m = random_confusion(rng, 5, 5)
    assert overlap_from_confusion(m, [2, 2, 4, 1, 1]).overlap == pytest.approx(
        overlap_from_confusion(m, [0.2, 0.2, 0.4, 0.1, 0.1]).overlap)


# ----- analytic variant --------------------------------------------------------------------------------


def test_analytic_small_noise_gives_inverse_simpson():
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(16, 4))
    pi = rng.random(16)
    share = pi / pi.sum()
    for sigma in (0.0, 1e-4):
        result = analytic_overlap(centroids, pi, sigma)
        assert result.geometry_penalty == pytest.approx(0.0, abs=1e-12)
        assert result.effective_size == pytest.approx(1 / (share @ share), rel=1e-9)


def test_analytic_effective_size_never_increases_with_noise():
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(32, 6))
    pi = rng.random(32)
    sizes = [analytic_overlap(centroids, pi, sigma).effective_size for sigma in np.geomspace(1e-3, 1e3, 60)]
    assert np.all(np.diff(sizes) <= 1e-12)
    assert all(size <= 32 for size in sizes)


def test_analytic_infinite_noise_gives_one():
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(16, 4))
    pi = rng.random(16)
    assert analytic_overlap(centroids, pi, math.inf).effective_size == 1.0
    assert analytic_overlap(centroids, pi, 1e6).effective_size == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("k", [2, 3, 8, 64])
def test_two_coincident_codewords_give_k_squared_over_k_plus_two(k):
    centroids = np.eye(k) * 100.0  # far apart...
    centroids[1] = centroids[0]     # ...except codewords 0 and 1, which coincide
    for sigma in (0.0, 1.0):
        result = analytic_overlap(centroids, np.ones(k), sigma)
        assert result.effective_size == pytest.approx(k * k / (k + 2), rel=1e-12)
        assert result.distribution_penalty == pytest.approx(0.0, abs=1e-15)
        assert result.geometry_penalty == pytest.approx(2 / k**2, rel=1e-9)


def test_analytic_is_invariant_to_a_common_shift():
    rng = np.random.default_rng(0)
    centroids, pi = rng.normal(size=(10, 3)), rng.random(10)
    assert analytic_overlap(centroids + 7.0, pi, 0.5).overlap == pytest.approx(
        analytic_overlap(centroids, pi, 0.5).overlap, rel=1e-9)


# ----- tokenizer level: Monte Carlo ------------------------------------------------------------------


def test_zero_noise_gives_no_flips_and_inverse_simpson(clustered):
    x, tokenizer = clustered
    report = expected_overlap(tokenizer, x, rho=0.0, samples=2, by=("level", "depth"))
    ids = tokenizer.encode(x)
    for entry in (*report.levels, *report.depths):
        st = entry.stats
        assert entry.flip_rate == 0.0
        assert st.geometry_penalty == pytest.approx(0.0, abs=1e-12)
        assert st.effective_size == pytest.approx(1 / st.simpson)
    counts = np.unique(ids.prefix_keys(2), return_counts=True)[1] / len(x)
    assert report.get("depth", 2).stats.simpson == pytest.approx(counts @ counts)
    assert report.get("depth", 2).stats.nominal_size == min(len(x), 16 * 16)


def test_empirical_bounds_monotonicity_and_large_noise(clustered):
    x, tokenizer = clustered
    rhos = (0.0, 0.05, 0.1, 0.2, 0.4, 0.8, 1000.0)
    sweep = overlap_sweep(tokenizer, x, rhos, samples=8, by=("level", "depth"), seed=3)
    for report in sweep.reports:
        for entry in (*report.levels, *report.depths):
            assert entry.stats.effective_size <= entry.stats.nominal_size * (1 + 1e-12)
            assert entry.stats.distribution_penalty >= -1e-15 and entry.stats.geometry_penalty >= -1e-15
        flips = [entry.flip_rate for entry in report.depths]
        assert flips == sorted(flips)  # a longer prefix changes whenever a shorter one does
    for by, index in (("level", 0), ("level", 1), ("depth", 2)):
        sizes = sweep.series(by, index)
        # Common random numbers: K_eff falls with noise up to Monte Carlo error (2% here).
        assert all(later <= earlier * 1.02 for earlier, later in itertools.pairwise(sizes)), sizes
    # Noise -> infinity: where an item lands no longer depends on its code, so K_eff -> 1. (Deep
    # prefixes with few items each estimate their rows of M from few draws, which biases K_eff
    # up; levels with many items per code show the limit.)
    assert sweep.series("level", 0)[-1] < 1.01
    assert sweep.series("level", 1)[-1] < 1.01
    assert sweep.series("level", 0, "flip_rate")[0] == 0.0


def test_empirical_matches_analytic_where_the_model_holds():
    """Items sit at their codewords (tiny spread), one level: M rows are the Voronoi cells of Gaussians.

    Coarse-graining a Gaussian into cells can only raise the Bhattacharyya coefficient, so the
    empirical K_eff is at most the analytic one (up to Monte Carlo error); at moderate noise, where
    the overlap of neighbouring codewords is small, they agree within 5%.
    """
    x = mixture(6000, 16, 8, separation=1.0, spread=0.01, seed=0)
    tokenizer = RQKMeans(levels=1, codebook_size=16, seed=0).fit(x)
    rhos = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    empirical = overlap_sweep(tokenizer, x, rhos, samples=16, by="level", seed=0).series("level", 0)
    analytic = analytic_sweep(tokenizer, x, rhos).series("level", 0)
    for rho, emp, ana in zip(rhos, empirical, analytic, strict=True):
        assert emp <= ana * 1.02, (rho, emp, ana)
        if rho <= 0.3:
            assert emp == pytest.approx(ana, rel=0.05), (rho, emp, ana)


@pytest.mark.parametrize("merge_every", [None, 1])
def test_sparse_counter_matches_a_dense_confusion_matrix(monkeypatch, merge_every):
    if merge_every is not None:  # merge the pending pairs after every chunk
        monkeypatch.setattr(_ConfusionCounter, "_MIN_MERGE", merge_every)
    rng = np.random.default_rng(0)
    n, samples, symbols = 400, 5, 7
    source = rng.integers(0, symbols, n)
    target = np.where(rng.random((samples, n)) < 0.6, source[None, :], rng.integers(0, symbols + 3, (samples, n)))
    counter = _ConfusionCounter(source, samples)
    for start in range(0, n, 50):  # in chunks, as the sweep feeds it
        counter.add(start, source[start:start + 50], target[:, start:start + 50])
    overlap, flip_rate, pi = counter.finalize()
    counts = np.zeros((symbols, symbols + 3))
    np.add.at(counts, (np.broadcast_to(source, target.shape).ravel(), target.ravel()), 1)
    confusion = counts / counts.sum(axis=1, keepdims=True)
    usage = np.bincount(source, minlength=symbols) / n
    assert overlap == pytest.approx(overlap_from_confusion(confusion, usage).overlap, rel=1e-12)
    assert flip_rate == pytest.approx(float((target != source).mean()))
    assert pi == pytest.approx(usage)


def test_same_seed_same_result_and_sigma(clustered):
    x, tokenizer = clustered
    first = expected_overlap(tokenizer, x, 0.1, 4, seed=7)
    assert first == expected_overlap(tokenizer, x, 0.1, 4, seed=7)
    assert first.sigma == pytest.approx(noise_sigma(x, 0.1))
    centred = x.astype(np.float64) - x.mean(axis=0)
    assert noise_sigma(x, 1.0) == pytest.approx(math.sqrt((centred**2).sum() / x.size))


def test_level_codebooks_are_the_codebooks_up_to_a_shift(clustered):
    _, tokenizer = clustered
    for level, book in enumerate(level_codebooks(tokenizer)):
        own = tokenizer.codebooks[level].numpy().astype(np.float64)
        assert book == pytest.approx(own - own[0], abs=1e-5)


def test_analytic_report_per_level(clustered):
    x, tokenizer = clustered
    report = analytic_expected_overlap(tokenizer, x, 0.1)
    assert [entry.index for entry in report.levels] == [0, 1]
    assert report.depths == () and report.method == "analytic"
    assert all(entry.flip_rate is None for entry in report.levels)


# ----- errors ------------------------------------------------------------------------------------------


def test_errors_say_what_and_how():
    with pytest.raises(DataError, match="do not sum to 1"):
        overlap_from_confusion(np.ones((3, 3)), np.ones(3))
    with pytest.raises(DataError, match="nonnegative"):
        overlap_from_confusion(np.eye(3), [1, -1, 1])
    with pytest.raises(DataError, match="one row per usage entry"):
        overlap_from_confusion(np.eye(3), np.ones(4))
    with pytest.raises(ConfigError, match="nominal size"):
        overlap_from_confusion(np.eye(3), np.ones(3), nominal_size=2)
    with pytest.raises(ConfigError, match="sigma must be >= 0"):
        analytic_overlap(np.eye(3), np.ones(3), -1.0)


def test_tokenizer_level_errors(clustered):
    x, tokenizer = clustered
    with pytest.raises(ConfigError, match="rho must be >= 0"):
        expected_overlap(tokenizer, x, rho=-0.1)
    with pytest.raises(ConfigError, match="samples"):
        expected_overlap(tokenizer, x, samples=0)
    with pytest.raises(ConfigError, match="by must be"):
        expected_overlap(tokenizer, x, by="prefix")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="dimension"):
        expected_overlap(tokenizer, x[:, :4])
    with pytest.raises(ConfigError, match="no depth 5"):
        expected_overlap(tokenizer, x, 0.1, 2, by="depth").get("depth", 5)
