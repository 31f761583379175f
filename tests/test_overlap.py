"""O_pi, K_eff and the penalties: every property docs/diagnostics.md states, on arrays and on tokenizers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp

from sidkit.diagnostics.overlap import (
    agreement_matrix,
    analytic_expected_overlap,
    analytic_onset_rho,
    analytic_overlap,
    analytic_sweep,
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
    share = pi / pi.sum()
    agreement = agreement_matrix(m)
    assert np.allclose(agreement, agreement.T)
    assert np.allclose(np.diag(agreement), (m * m).sum(axis=1))
    # Omega = G / P(agree | same): unit diagonal on average (weights pi^2), O_pi = pi' Omega pi.
    same = (share**2 @ np.diag(agreement)) / (share @ share)
    one_pass = overlap_from_confusion(m, pi)
    explicit = overlap_from_omega(agreement / same, pi)
    assert one_pass.overlap == pytest.approx(explicit.overlap, rel=1e-12)
    # By the definition: P(same) * P(agree) / P(agree and same), with two random items' noisy copies.
    agree = float((share @ m) @ (share @ m))
    assert one_pass.overlap == pytest.approx((share @ share) * agree / (share**2 @ np.diag(agreement)), rel=1e-12)
    # The sparse form gives the same number.
    assert overlap_from_confusion(sp.csr_array(m), pi).overlap == pytest.approx(one_pass.overlap, rel=1e-12)
    assert agreement_matrix(sp.csr_matrix(m)) == pytest.approx(agreement)


def test_identical_rows_give_complete_overlap_and_disjoint_rows_none():
    rng = np.random.default_rng(0)
    row = rng.dirichlet(np.ones(9))
    pi = rng.random(5)
    assert overlap_from_confusion(np.tile(row, (5, 1)), pi).effective_size == pytest.approx(1.0)
    blocks = np.zeros((5, 10))
    for a in range(5):
        blocks[a, 2 * a: 2 * a + 2] = (0.7, 0.3)   # each symbol spreads over cells of its own
    result = overlap_from_confusion(blocks, pi)
    assert result.geometry_penalty == pytest.approx(0.0, abs=1e-15)


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


@pytest.mark.parametrize("shift", [7.0, 1e4, 1e6])
def test_analytic_is_invariant_to_a_common_shift(shift):
    rng = np.random.default_rng(0)
    centroids, pi = rng.normal(size=(10, 3)), rng.random(10)
    assert analytic_overlap(centroids + shift, pi, 0.5).overlap == pytest.approx(
        analytic_overlap(centroids, pi, 0.5).overlap, rel=1e-6)
    # Close codewords far from the origin stay distinct (no coincidence guard triggered by the offset).
    close = rng.normal(size=(8, 3)) * 0.01
    expected = analytic_overlap(close, np.ones(8), 1e-4)
    assert expected.effective_size == pytest.approx(8.0, rel=1e-6)
    assert analytic_overlap(close + shift, np.ones(8), 1e-4).effective_size == pytest.approx(8.0, rel=1e-6)


def test_analytic_is_the_agreement_of_gaussian_rows():
    """Two codewords at distance d: Omega = <N_0, N_1> / ||N||^2 = exp(-d^2 / (4 sigma^2)), by quadrature."""
    d, sigma = 1.3, 0.7
    grid = np.linspace(-10, 12, 200_001)
    first = np.exp(-grid**2 / (2 * sigma**2))
    second = np.exp(-(grid - d) ** 2 / (2 * sigma**2))
    omega = (first * second).sum() / (first * first).sum()
    result = analytic_overlap(np.array([[0.0], [d]]), np.ones(2), sigma)
    assert result.overlap == pytest.approx((1 + omega) / 2, rel=1e-9)


def test_onset_rho_marks_where_the_analytic_variant_leaves_inverse_simpson():
    rng = np.random.default_rng(0)
    centroids, pi = rng.normal(size=(16, 4)) * 3, rng.random(16)
    onset = analytic_onset_rho(centroids, pi, spread=1.0)
    simpson = 1 / ((pi / pi.sum()) ** 2).sum()
    assert analytic_overlap(centroids, pi, 0.3 * onset).effective_size == pytest.approx(simpson, rel=1e-3)
    assert analytic_overlap(centroids, pi, 2 * onset).effective_size < 0.95 * simpson
    assert analytic_onset_rho(np.zeros((3, 2)), np.ones(3), 1.0) == math.inf


# ----- tokenizer level: Monte Carlo ------------------------------------------------------------------


def test_zero_noise_gives_no_flips_and_inverse_simpson(clustered):
    x, tokenizer = clustered
    report = expected_overlap(tokenizer, x, rho=0.0, samples=3, by=("level", "depth"))
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
            assert 1.0 <= entry.stats.effective_size <= entry.stats.nominal_size * (1 + 1e-12)
            assert entry.stats.effective_size <= 1 / entry.stats.simpson * (1 + 1e-12)
            assert entry.stats.distribution_penalty >= -1e-15 and entry.stats.geometry_penalty >= -1e-15
            assert entry.stats.effective_size_se >= 0 and entry.flip_rate_se is not None
        flips = [entry.flip_rate for entry in report.depths]
        assert flips == sorted(flips)  # a longer prefix changes whenever a shorter one does
    for by, index in (("level", 0), ("level", 1), ("depth", 1), ("depth", 2)):
        sizes, errors = sweep.series(by, index), sweep.series(by, index, "effective_size_se")
        # K_eff does not increase with noise, within the reported error.
        for (k0, e0), (k1, e1) in itertools.pairwise(zip(sizes, errors, strict=True)):
            assert k1 <= k0 + 3 * math.hypot(e0, e1), (by, index, sizes, errors)
        # Noise -> infinity: where an item lands no longer depends on its code, so K_eff -> 1,
        # deep prefixes included (most depth-2 symbols here hold one or two items).
        assert abs(sizes[-1] - 1.0) <= max(0.02, 3 * errors[-1]), (by, index, sizes[-1], errors[-1])
    assert sweep.series("level", 0, "flip_rate")[0] == 0.0


def test_empirical_matches_analytic_where_the_model_holds():
    """Items sit at their codewords (tiny spread), one level: M rows are the Voronoi cells of Gaussians.

    Up to about 1.5 times the analytic onset the two agree within 5%; beyond it they part by design
    (agreement of cells, not of points)."""
    x = mixture(6000, 16, 8, separation=1.0, spread=0.01, seed=0)
    tokenizer = RQKMeans(levels=1, codebook_size=16, seed=0).fit(x)
    rhos = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0)
    empirical = overlap_sweep(tokenizer, x, rhos, samples=16, by="level", seed=0).series("level", 0)
    analytic_report = analytic_sweep(tokenizer, x, rhos)
    analytic = analytic_report.series("level", 0)
    onset = analytic_report.reports[0].levels[0].onset_rho
    assert onset is not None
    for rho, emp, ana in zip(rhos, empirical, analytic, strict=True):
        if rho <= 1.5 * onset:
            assert emp == pytest.approx(ana, rel=0.05), (rho, emp, ana)


def test_a_prefix_per_item_reaches_one_at_infinite_noise():
    """The case that biased the plug-in estimate most: nearly every full SID is held by one item."""
    x = np.random.default_rng(2).normal(size=(300, 6)).astype(np.float32)
    tokenizer = RQKMeans(levels=2, codebook_size=64, seed=0).fit(x)
    report = expected_overlap(tokenizer, x, rho=1e3, samples=8, by="depth")
    full = report.get("depth", 2)
    assert full.symbols > 280
    assert abs(full.stats.effective_size - 1.0) <= 3 * full.stats.effective_size_se + 0.02
    assert full.flip_rate > 0.99


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
        expected_overlap(tokenizer, x, samples=2)
    with pytest.raises(ConfigError, match="by must be"):
        expected_overlap(tokenizer, x, by="prefix")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="dimension"):
        expected_overlap(tokenizer, x[:, :4])
    with pytest.raises(ConfigError, match="no depth 5"):
        expected_overlap(tokenizer, x, 0.1, 3, by="depth").get("depth", 5)
