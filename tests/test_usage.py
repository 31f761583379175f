"""Usage and reconstruction diagnostics against hand computations and numpy references.

The reconstruction tests live here too, beside the usage tests, until they get a file of their own.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sidkit.diagnostics.reconstruction import (
    BLOCK_ROWS,
    ReconstructionAccumulator,
    ReconstructionReport,
    reconstruction_report,
)
from sidkit.diagnostics.usage import (
    LEVEL_METRICS,
    SID_METRICS,
    LevelUsage,
    SidUsage,
    UsageAccumulator,
    compare,
    gini,
    level_usage,
    usage_report,
)
from sidkit.errors import ConfigError, DataError, SidkitError
from sidkit.ids import SemanticIds


def gini_by_definition(counts: list[int]) -> float:
    """Mean-absolute-difference Gini, written out: sum_i sum_j |c_i - c_j| / (2 K^2 mean(c))."""
    k = len(counts)
    mean = sum(counts) / k
    return sum(abs(a - b) for a in counts for b in counts) / (2 * k * k * mean)


def random_ids(n: int, sizes: tuple[int, ...], seed: int = 0, skew: bool = True) -> SemanticIds:
    rng = np.random.default_rng(seed)
    columns = []
    for size in sizes:
        # Skewed draws leave dead codes and collisions, which is what the metrics are about.
        column = (rng.zipf(1.6, n) - 1) % size if skew else rng.integers(0, size, n)
        columns.append(column)
    return SemanticIds(np.column_stack(columns), sizes)


# ----- Gini ----------------------------------------------------------------------------------------

def test_gini_hand_example() -> None:
    # counts [0, 0, 1, 3]: the 16 ordered pairs' |c_i - c_j| add to 2 * (0 + 1 + 3 + 1 + 3 + 2) = 20;
    # K = 4, mean = 1: G = 20 / (2 * 16 * 1) = 0.625.
    assert gini_by_definition([0, 0, 1, 3]) == 0.625
    assert gini(np.array([0, 0, 1, 3])) == pytest.approx(0.625, abs=1e-15)
    assert gini(np.array([3, 0, 1, 0])) == pytest.approx(0.625, abs=1e-15)  # order does not matter


@pytest.mark.parametrize("counts", [[5, 5, 5, 5], [0, 0, 0, 9], [1, 2, 3, 4, 100], [7], [0, 1], [2, 2, 0]])
def test_gini_matches_definition(counts: list[int]) -> None:
    assert gini(np.array(counts)) == pytest.approx(gini_by_definition(counts), abs=1e-12)


def test_gini_extremes() -> None:
    assert gini(np.full(16, 3)) == 0.0                     # uniform
    assert gini(np.r_[np.zeros(15), 40]) == 15 / 16        # all on one code: (K - 1) / K
    assert gini(np.zeros(4)) == 0.0


# ----- per level -----------------------------------------------------------------------------------

def test_level_usage_hand_example() -> None:
    # K = 4 codes, items take codes 3, 3, 3, 1 -> counts [0, 1, 0, 3], pi = [0, 1/4, 0, 3/4].
    ids = SemanticIds(np.array([[3], [3], [3], [1]]), (4,))
    level = usage_report(ids).levels[0]
    entropy = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))  # = 0.5623...
    assert level == LevelUsage(level=0, size=4, active=2, dead=2,
                               perplexity=pytest.approx(math.exp(entropy)),  # type: ignore[arg-type]
                               entropy_ratio=pytest.approx(entropy / math.log(4)),  # type: ignore[arg-type]
                               gini=pytest.approx(gini_by_definition([0, 1, 0, 3])))  # type: ignore[arg-type]
    assert level.perplexity == pytest.approx(1.7548, abs=1e-4)


def test_level_usage_uniform_and_collapsed() -> None:
    uniform = level_usage(np.full(8, 5))
    assert (uniform.active, uniform.dead) == (8, 0)
    assert uniform.perplexity == pytest.approx(8.0)
    assert uniform.entropy_ratio == pytest.approx(1.0)
    assert uniform.gini == 0.0
    collapsed = level_usage(np.r_[0, 0, 12, 0, 0, 0, 0, 0])
    assert (collapsed.active, collapsed.dead) == (1, 7)
    assert collapsed.perplexity == 1.0
    assert collapsed.entropy_ratio == 0.0
    assert collapsed.gini == pytest.approx(7 / 8)


def test_level_usage_single_code_level() -> None:
    # K = 1: log K = 0; the only possible usage is uniform, so the ratio is defined as 1.
    usage = level_usage(np.array([4]))
    assert (usage.active, usage.dead, usage.perplexity, usage.entropy_ratio, usage.gini) == (1, 0, 1.0, 1.0, 0.0)


def test_level_usage_matches_numpy_reference_per_level() -> None:
    ids = random_ids(5000, (64, 32, 16), seed=3)
    report = usage_report(ids)
    for level, size in enumerate(ids.sizes):
        counts = np.array([(ids.codes[:, level] == code).sum() for code in range(size)])
        share = counts[counts > 0] / len(ids)
        entropy = -(share * np.log(share)).sum()
        got = report.levels[level]
        assert (got.level, got.size) == (level, size)
        assert got.active == (counts > 0).sum() and got.dead == (counts == 0).sum()
        assert got.perplexity == pytest.approx(np.exp(entropy), rel=1e-12)
        assert got.entropy_ratio == pytest.approx(entropy / np.log(size), rel=1e-12)
        assert got.gini == pytest.approx(gini_by_definition(counts.tolist()), rel=1e-12)


# ----- full SID ------------------------------------------------------------------------------------

def test_sid_usage_hand_example() -> None:
    # SIDs 0-1 (x3), 2-0 (x1), 2-1 (x2), 1-1 (x1): N = 7, 4 distinct.
    codes = np.array([[0, 1], [0, 1], [0, 1], [2, 0], [2, 1], [2, 1], [1, 1]])
    sid = usage_report(SemanticIds(codes, (3, 2))).sid
    # unique 4 / 7; colliding items: the 3 of 0-1 and the 2 of 2-1 -> 5 / 7; largest bucket 3.
    assert sid == SidUsage(unique_ratio=4 / 7, collision_rate=5 / 7, max_bucket=3)


def test_sid_usage_all_unique_and_all_same() -> None:
    unique = usage_report(SemanticIds(np.arange(6).reshape(6, 1), (6,))).sid
    assert unique == SidUsage(unique_ratio=1.0, collision_rate=0.0, max_bucket=1)
    same = usage_report(SemanticIds(np.zeros((5, 3), dtype=int), (2, 2, 2))).sid
    assert same == SidUsage(unique_ratio=0.2, collision_rate=1.0, max_bucket=5)


def test_sid_usage_matches_python_reference() -> None:
    ids = random_ids(3000, (8, 8, 4), seed=4)
    buckets: dict[tuple[int, ...], int] = {}
    for row in ids.codes.tolist():
        buckets[tuple(row)] = buckets.get(tuple(row), 0) + 1
    sid = usage_report(ids).sid
    assert sid.unique_ratio == len(buckets) / 3000
    assert sid.collision_rate == sum(c for c in buckets.values() if c > 1) / 3000
    assert sid.max_bucket == max(buckets.values())


def test_sid_usage_when_sids_do_not_fit_64_bits() -> None:
    # 9 levels of 256 codes need 72 bits: keys fall back to the rows' bytes.
    codes = np.array([[1, 2, 3] * 3, [1, 2, 3] * 3, [255, 0, 5] * 3, [1, 2, 3] * 2 + [1, 2, 4]])
    sid = usage_report(SemanticIds(codes, (256,) * 9)).sid
    assert sid == SidUsage(unique_ratio=3 / 4, collision_rate=2 / 4, max_bucket=2)


# ----- report shape --------------------------------------------------------------------------------

def test_report_to_dict_is_json() -> None:
    report = usage_report(random_ids(100, (8, 4)))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["num_items"] == 100
    assert len(data["usage"]) == 2
    assert set(data["usage"][0]) >= {"active", "dead", "perplexity", "entropy_ratio", "gini"}
    assert set(data["sid"]) == {"unique_ratio", "collision_rate", "max_bucket"}


# ----- accumulator ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sizes", [(16, 8, 4), (256,) * 9, (1, 5)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accumulator_equals_one_shot_over_random_chunkings(sizes: tuple[int, ...], seed: int,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A tiny merge threshold makes the accumulator merge its SID counts many times.
    monkeypatch.setattr(UsageAccumulator, "_MIN_MERGE", 7)
    ids = random_ids(2000, sizes, seed=seed)
    expected = usage_report(ids)
    rng = np.random.default_rng(seed + 100)
    cuts = np.sort(rng.choice(np.arange(1, 2000), size=int(rng.integers(1, 60)), replace=False))
    accumulator = UsageAccumulator(sizes)
    for chunk in np.split(ids.codes, cuts):
        accumulator.update(chunk)
    accumulator.update(np.zeros((0, len(sizes)), dtype=np.int64))  # empty chunks are fine
    assert accumulator.finalize() == expected  # exact, floats included
    assert accumulator.num_items == 2000


def test_accumulator_takes_semantic_ids_and_finalizes_once() -> None:
    ids = random_ids(300, (8, 4))
    accumulator = UsageAccumulator(ids.sizes).update(ids.prefix(2)).update(ids.codes[:0])
    report = accumulator.finalize()
    assert report == usage_report(ids)
    assert accumulator.finalize() is report
    with pytest.raises(SidkitError, match="already finalized"):
        accumulator.update(ids.codes)


def test_accumulator_validates_input() -> None:
    accumulator = UsageAccumulator((4, 3))
    with pytest.raises(DataError, match="levels"):
        accumulator.update(np.zeros((2, 3), dtype=int))
    with pytest.raises(DataError, match="outside"):
        accumulator.update(np.array([[4, 0]]))
    with pytest.raises(DataError, match="outside"):
        accumulator.update(np.array([[0, -1]]))
    with pytest.raises(DataError, match="integers"):
        accumulator.update(np.zeros((2, 2)))
    with pytest.raises(DataError, match="2-d"):
        accumulator.update(np.zeros(2, dtype=int))
    with pytest.raises(DataError, match="sizes"):
        accumulator.update(SemanticIds(np.zeros((1, 2), dtype=int), (4, 4)))
    # Nothing was counted by the failed updates.
    with pytest.raises(DataError, match="no codes"):
        accumulator.finalize()
    with pytest.raises(ConfigError):
        UsageAccumulator(())
    with pytest.raises(ConfigError):
        UsageAccumulator((4, 0))


# ----- compare -------------------------------------------------------------------------------------

def test_compare_deltas() -> None:
    # before: level 0 collapsed on one of 4 codes; after: uniform over the 4 codes.
    before = usage_report(SemanticIds(np.array([[0, 0], [0, 1], [0, 0], [0, 1]]), (4, 2)))
    after = usage_report(SemanticIds(np.array([[0, 0], [1, 1], [2, 0], [3, 1]]), (4, 2)))
    comparison = compare(before, after)
    active = comparison.get("active", level=0)
    assert (active.before, active.after, active.delta) == (1, 4, 3)
    gini0 = comparison.get("gini", level=0)
    assert (gini0.before, gini0.after) == (0.75, 0.0) and gini0.delta == -0.75
    assert comparison.get("perplexity", level=0).delta == pytest.approx(3.0)
    assert comparison.get("perplexity", level=1).delta == 0.0
    # SIDs: before 0-0 x2, 0-1 x2 -> unique 0.5, all collide; after all unique.
    assert comparison.get("unique_ratio").delta == 0.5
    assert comparison.get("collision_rate").delta == -1.0
    assert comparison.get("max_bucket").delta == -1
    assert comparison.get("num_items").delta == 0
    with pytest.raises(ConfigError):
        comparison.get("gini")  # a level metric needs a level


def test_compare_rows_and_dict() -> None:
    before = usage_report(random_ids(500, (16, 8), seed=1))
    after = usage_report(random_ids(500, (16, 8), seed=2, skew=False))
    comparison = compare(before, after)
    rows = comparison.rows()
    assert len(rows) == 1 + 2 * len(LEVEL_METRICS) + len(SID_METRICS)
    assert rows[0][0] == "num_items"
    names = [row[0] for row in rows]
    assert "level 1 gini" in names and "sid collision_rate" in names
    for _, old, new, delta in rows:
        assert delta == new - old  # type: ignore[operator]
    data = json.loads(json.dumps(comparison.to_dict()))
    assert data["usage"][1]["gini"] == {"before": before.levels[1].gini, "after": after.levels[1].gini,
                                        "delta": after.levels[1].gini - before.levels[1].gini}
    assert set(data["sid"]) == set(SID_METRICS)


def test_compare_different_depths() -> None:
    two = usage_report(random_ids(100, (8, 4)))
    three = usage_report(random_ids(100, (8, 4, 2)))
    comparison = compare(two, three)
    extra = comparison.get("perplexity", level=2)
    assert extra.before is None and extra.delta is None
    assert extra.after == three.levels[2].perplexity
    assert len(comparison.to_dict()["usage"]) == 3  # type: ignore[arg-type]


# ----- reconstruction ------------------------------------------------------------------------------

def reference(x: np.ndarray, x_hat: np.ndarray) -> tuple[float, float, float]:
    """The definitions of docs/diagnostics.md ("Reconstruction"), one item at a time."""
    errors, relative, cosines = [], [], []
    for row, row_hat in zip(x.astype(np.float64), x_hat.astype(np.float64), strict=True):
        error = float(np.sum((row - row_hat) ** 2))
        errors.append(error)
        relative.append(error / float(np.dot(row, row)))
        cosines.append(float(np.dot(row, row_hat) / (np.linalg.norm(row) * np.linalg.norm(row_hat))))
    return float(np.mean(errors)), float(np.mean(relative)), float(np.mean(cosines))


def noisy_pair(n: int = 1000, dim: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x_hat = (x + rng.normal(scale=0.4, size=x.shape)).astype(np.float32)
    return x, x_hat


def test_reconstruction_hand_example() -> None:
    x = np.array([[3.0, 4.0], [1.0, 0.0]])
    x_hat = np.array([[3.0, 0.0], [0.0, 2.0]])
    # Row 0: error 16, ||x||^2 25, cosine 9 / (5 * 3) = 0.6. Row 1: error 1 + 4 = 5, ||x||^2 1, cosine 0.
    report = reconstruction_report(x, x_hat)
    assert report.mse == pytest.approx((16 + 5) / 2)
    assert report.relative_error == pytest.approx((16 / 25 + 5 / 1) / 2)
    assert report.cosine == pytest.approx((0.6 + 0.0) / 2)


def test_reconstruction_matches_numpy_reference() -> None:
    x, x_hat = noisy_pair()
    report = reconstruction_report(x, x_hat)
    mse, relative, cosine = reference(x, x_hat)
    assert report.mse == pytest.approx(mse, rel=1e-12)
    assert report.relative_error == pytest.approx(relative, rel=1e-12)
    assert report.cosine == pytest.approx(cosine, rel=1e-12)
    perfect = reconstruction_report(x, x)
    assert perfect.mse == 0.0 and perfect.relative_error == 0.0
    assert perfect.cosine == pytest.approx(1.0)
    assert report.to_dict() == {"mse": report.mse, "relative_error": report.relative_error,
                                "cosine": report.cosine}


def test_reconstruction_on_memory_mapped_arrays(tmp_path) -> None:  # type: ignore[no-untyped-def]
    x, x_hat = noisy_pair(n=700)
    for name, values in (("x.npy", x), ("x_hat.npy", x_hat)):
        np.save(tmp_path / name, values)
    x_map = np.load(tmp_path / "x.npy", mmap_mode="r")
    x_hat_map = np.load(tmp_path / "x_hat.npy", mmap_mode="r")
    assert reconstruction_report(x_map, x_hat_map, chunk_rows=64) == reconstruction_report(x, x_hat)


def test_reconstruction_accumulator_equals_one_shot_over_random_chunkings() -> None:
    x, x_hat = noisy_pair(n=2 * BLOCK_ROWS + 1234, dim=5, seed=1)
    expected = reconstruction_report(x, x_hat)
    rng = np.random.default_rng(7)
    for _ in range(3):
        cuts = np.sort(rng.choice(np.arange(1, len(x)), size=int(rng.integers(1, 40)), replace=False))
        accumulator = ReconstructionAccumulator()
        for x_chunk, x_hat_chunk in zip(np.split(x, cuts), np.split(x_hat, cuts), strict=True):
            accumulator.update(x_chunk, x_hat_chunk)
        assert accumulator.finalize() == expected  # bit for bit
    single = ReconstructionAccumulator()
    for row in range(300):
        single.update(x[row:row + 1], x_hat[row:row + 1])
    assert single.finalize() == reconstruction_report(x[:300], x_hat[:300])


def test_reconstruction_zero_reconstruction_has_cosine_zero() -> None:
    x = np.ones((3, 4))
    report = reconstruction_report(x, np.zeros((3, 4)))
    assert report == ReconstructionReport(mse=4.0, relative_error=1.0, cosine=0.0)


def test_reconstruction_errors() -> None:
    x, x_hat = noisy_pair(n=10)
    with pytest.raises(DataError, match="shape"):
        reconstruction_report(x, x_hat[:9])
    with pytest.raises(DataError, match="shape"):
        reconstruction_report(x, x_hat[:, :5])
    with pytest.raises(DataError, match="2-d"):
        reconstruction_report(x[0], x_hat[0])
    bad = x.copy()
    bad[6, 2] = np.nan
    with pytest.raises(DataError, match="first at row 6") as info:
        reconstruction_report(bad, x_hat, chunk_rows=4)
    assert info.value.where == "X"
    bad_hat = x_hat.copy()
    bad_hat[3, 0] = np.inf
    with pytest.raises(DataError, match="first at row 3") as info:
        reconstruction_report(x, bad_hat)
    assert info.value.where == "X_hat"
    zero = x.copy()
    zero[8] = 0.0
    with pytest.raises(DataError, match="all zero, first at row 8"):
        reconstruction_report(zero, x_hat, chunk_rows=3)
    with pytest.raises(DataError, match="numeric"):
        reconstruction_report(x.astype(str), x_hat.astype(str))
    with pytest.raises(DataError, match="no rows"):
        reconstruction_report(np.zeros((0, 4)), np.zeros((0, 4)))


def test_reconstruction_accumulator_checks() -> None:
    x, x_hat = noisy_pair(n=10)
    accumulator = ReconstructionAccumulator().update(x[:5], x_hat[:5])
    with pytest.raises(DataError, match="dimension"):
        accumulator.update(x[5:, :3], x_hat[5:, :3])
    with pytest.raises(DataError, match="shape"):
        accumulator.update(x[5:], x_hat[5:9])
    report = accumulator.update(x[5:], x_hat[5:]).finalize()
    assert report == reconstruction_report(x, x_hat)
    assert accumulator.finalize() is report
    with pytest.raises(SidkitError, match="already finalized"):
        accumulator.update(x, x_hat)
