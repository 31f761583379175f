"""k-means in torch: objective, seeding, recovery, balance, empty clusters, argument checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from sidkit.errors import ConfigError
from sidkit.tokenizers.kmeans import (
    affine_scores,
    balanced_assign,
    kmeans,
    kmeans_plus_plus,
    lloyd_bfloat16,
    nearest_centers,
    row_max,
)


def mixture(n: int, k: int, dim: int, *, spread: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, dim) float32 points around k centres drawn on a sphere of radius 10, and the centres."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, dim))
    centers *= 10 / np.linalg.norm(centers, axis=1, keepdims=True)
    labels = rng.integers(0, k, n)
    points = centers[labels] + spread * rng.standard_normal((n, dim))
    return points.astype(np.float32), centers


def potential(points: torch.Tensor, centers: torch.Tensor) -> float:
    return float(nearest_centers(points, centers)[1].double().sum())


def test_objective_never_increases() -> None:
    points, _ = mixture(3000, 40, 16, spread=3.0, seed=0)
    result = kmeans(points, 30, max_iter=40, tol=0, seed=1, bfloat16=False)  # exact Lloyd: monotone
    history = np.array(result.objective)
    assert len(history) >= 3
    assert np.all(np.diff(history) <= 1e-5 * history[:-1])
    # The reported final objective is that of the returned centres and assignment.
    dist = ((torch.from_numpy(points) - result.centers[result.assignment]) ** 2).sum(1)
    assert float(dist.double().mean()) == pytest.approx(history[-1], rel=1e-4)


def test_kmeans_plus_plus_beats_random_seeds_on_average() -> None:
    points, _ = mixture(2000, 25, 8, spread=0.5, seed=2)
    x = torch.from_numpy(points)
    ratios = []
    for seed in range(8):
        generator = torch.Generator().manual_seed(seed)
        plus = kmeans_plus_plus(x, 25, generator=generator)
        random = x[torch.randperm(len(x), generator=generator)[:25]]
        ratios.append(potential(x, plus) / potential(x, random))
    assert np.mean(ratios) < 0.7


def test_recovers_centres_of_separated_mixture() -> None:
    points, truth = mixture(4000, 12, 10, spread=0.3, seed=3)
    result = kmeans(points, 12, seed=0)
    found = result.centers.double().numpy()
    cost = ((found[:, None, :] - truth[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    assert np.sqrt(cost[rows, cols]).max() < 0.1
    assert result.converged


def test_nearest_centers_matches_float64_brute_force() -> None:
    rng = np.random.default_rng(4)
    x, c = rng.standard_normal((1000, 24)), rng.standard_normal((70, 24))
    index, dist = nearest_centers(torch.tensor(x, dtype=torch.float32), torch.tensor(c, dtype=torch.float32),
                                  chunk_size=128)
    brute = ((x[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    np.testing.assert_array_equal(index.numpy(), brute.argmin(1))
    np.testing.assert_allclose(dist.numpy(), brute.min(1), rtol=1e-4, atol=1e-4)


def test_affine_scores_equals_linear() -> None:
    generator = torch.Generator().manual_seed(5)
    x, w, b = torch.randn(300, 33, generator=generator), torch.randn(17, 33, generator=generator), torch.randn(17)
    torch.testing.assert_close(affine_scores(x, w, b), x @ w.T + b, rtol=1e-5, atol=1e-4)


def test_seed_reproduces_and_differs() -> None:
    points, _ = mixture(1500, 20, 8, spread=2.0, seed=6)
    first, again, other = (kmeans(points, 20, seed=s) for s in (7, 7, 8))
    assert torch.equal(first.centers, again.centers)
    assert torch.equal(first.assignment, again.assignment)
    assert not torch.equal(first.centers, other.centers)


@pytest.mark.parametrize("factor", [1.0, 1.1, 1.5])
def test_balanced_mode_respects_capacity(factor: float) -> None:
    # Skewed data: a third of the points sit in one tight blob that plain k-means would give few centres.
    rng = np.random.default_rng(9)
    points = np.concatenate([rng.standard_normal((1000, 6)) * 0.05, rng.standard_normal((2003, 6)) * 3])
    result = kmeans(points.astype(np.float32), 32, balanced=True, balance_factor=factor, seed=0)
    capacity = int(np.ceil(factor * len(points) / 32))
    assert int(result.sizes.max()) <= capacity
    assert int(result.sizes.sum()) == len(points)
    plain = kmeans(points.astype(np.float32), 32, seed=0)
    assert int(plain.sizes.max()) > capacity  # the cap did something


def test_balanced_assign_is_nearest_when_capacity_allows() -> None:
    points, _ = mixture(500, 5, 4, spread=0.2, seed=10)
    x = torch.from_numpy(points)
    centers = kmeans(points, 5, seed=0).centers
    nearest, _ = nearest_centers(x, centers)
    balanced, dist = balanced_assign(x, centers, capacity=len(points))
    assert torch.equal(nearest, balanced)
    assert torch.all(dist >= 0)


def test_empty_clusters_are_reseeded_with_k_close_to_n() -> None:
    # 60 points, only 40 distinct: seeds can coincide and clusters go empty; every point must
    # still end up with a valid cluster and no centre may be NaN.
    rng = np.random.default_rng(11)
    distinct = rng.standard_normal((40, 5)).astype(np.float32)
    points = np.concatenate([distinct, distinct[:20]])
    result = kmeans(points, 55, seed=0, max_iter=10)
    assert torch.isfinite(result.centers).all()
    assert int(result.assignment.max()) < 55
    assert result.objective[-1] == pytest.approx(0.0, abs=1e-6)  # 40 distinct points, 55 centres


def test_update_repairs_an_empty_cluster() -> None:
    # Two far-apart groups but every initial centre in one group: Lloyd must move one centre over.
    points = np.concatenate([np.zeros((50, 2)), np.full((50, 2), 100.0)]).astype(np.float32)
    points += np.random.default_rng(12).standard_normal(points.shape).astype(np.float32) * 0.01
    from sidkit.tokenizers.kmeans import update_centers

    x = torch.from_numpy(points)
    centers = torch.tensor([[0.0, 0.0], [0.1, 0.1]])
    index, dist = nearest_centers(x, centers)
    index[:] = 0  # centre 1 empty
    new, reseeded = update_centers(x, index, dist, centers)
    assert reseeded == 1
    assert float(new[1].norm()) > 100  # moved onto a far point


@pytest.mark.parametrize(("args", "where"), [
    ({"k": 0}, "k"), ({"k": 5000}, "k"), ({"k": 3, "max_iter": -1}, "max_iter"),
    ({"k": 3, "tol": -1.0}, "tol"), ({"k": 3, "balance_factor": 0.5}, "balance_factor"),
    ({"k": 3, "chunk_size": 0}, "chunk_size"),
])
def test_bad_arguments_are_config_errors(args: dict, where: str) -> None:
    points, _ = mixture(100, 3, 4, spread=1.0, seed=13)
    with pytest.raises(ConfigError) as error:
        kmeans(points, **args)
    assert error.value.where == where


def test_default_gemm_path_gives_the_same_assignment(monkeypatch: pytest.MonkeyPatch) -> None:
    from sidkit.tokenizers import kmeans as module

    points, _ = mixture(800, 10, 12, spread=1.0, seed=14)
    x = torch.from_numpy(points)
    centers = x[:10].clone()
    fast = nearest_centers(x, centers)[0]
    monkeypatch.setenv("SIDKIT_ONEDNN", "0")
    module._onednn_linear_works.cache_clear()
    try:
        assert not module._onednn_linear_works(torch.float32)
        assert torch.equal(nearest_centers(x, centers)[0], fast)
    finally:
        monkeypatch.delenv("SIDKIT_ONEDNN")
        module._onednn_linear_works.cache_clear()


def test_row_max_is_torch_max_with_ties_to_the_lowest_index() -> None:
    scores = torch.randn(500, 64, generator=torch.Generator().manual_seed(0))
    scores[:, 7] = scores[:, 30] = 9.0  # a tie in every row
    scores[3] = 0.0  # a row of ties
    values, index = torch.empty(500), torch.empty(500, dtype=torch.int64)
    row_max(scores, values, index)
    assert torch.equal(index[4:], torch.full((496,), 7)) and int(index[3]) == 0
    assert torch.equal(values, scores.max(1).values)


def test_bfloat16_lloyd_ends_with_the_exact_assignment_and_objective() -> None:
    points, _ = mixture(5000, 40, 24, spread=3.0, seed=4)
    x = torch.from_numpy(points)
    low = kmeans(points, 32, seed=0, bfloat16=True)
    exact_index, exact_dist = nearest_centers(x, low.centers)
    assert torch.equal(low.assignment, exact_index)
    assert low.objective[-1] == pytest.approx(float(exact_dist.double().mean()), rel=1e-6)
    assert low.bfloat16
    # The objectives of the bfloat16 passes come from per-centre sums: they must equal the direct ones
    # for the same assignment, and the result must be as good as exact Lloyd's.
    exact = kmeans(points, 32, seed=0, bfloat16=False)
    assert not exact.bfloat16
    assert low.objective[-1] == pytest.approx(exact.objective[-1], rel=0.01)


def test_objective_from_centre_sums_equals_the_direct_mean() -> None:
    from sidkit.tokenizers.kmeans import _assign_and_sum
    from sidkit.workers import blocks

    points, _ = mixture(3000, 20, 12, spread=2.0, seed=5)
    x = torch.from_numpy(points)
    centers = x[:20].clone() + 0.1
    point_sq = x.square().sum(1)
    index, _, sums, counts, objective = _assign_and_sum(x, centers, point_sq, blocks(3000, 700), x.bfloat16())
    direct = ((x.double() - centers.double()[index]) ** 2).sum(1).mean()
    assert objective == pytest.approx(float(direct), rel=1e-6)  # float32 sums
    assert torch.equal(counts, torch.bincount(index, minlength=20))
    assert torch.allclose(sums, torch.zeros(20, 12).index_add_(0, index, x), atol=1e-4)


def test_seeding_from_the_gram_matrix_matches_streaming(monkeypatch: pytest.MonkeyPatch) -> None:
    import sidkit.tokenizers.kmeans as km

    points, _ = mixture(3000, 30, 16, spread=0.5, seed=6)
    x = torch.from_numpy(points)
    with_gram = kmeans_plus_plus(x, 30, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(km, "GRAM_MAX_POINTS", 0)
    streamed = kmeans_plus_plus(x, 30, generator=torch.Generator().manual_seed(1))
    # Both pick actual points, with the same potential.
    assert potential(x, with_gram) == pytest.approx(potential(x, streamed), rel=0.05)
    for seeds in (with_gram, streamed):
        assert bool((seeds[:, None, :] == x[None]).all(-1).any(1).all())


def test_lloyd_bfloat16_default_follows_the_override(monkeypatch: pytest.MonkeyPatch) -> None:
    lloyd_bfloat16.cache_clear()
    monkeypatch.setenv("SIDKIT_LLOYD_BF16", "0")
    try:
        assert not lloyd_bfloat16(torch.device("cpu"))
    finally:
        lloyd_bfloat16.cache_clear()
