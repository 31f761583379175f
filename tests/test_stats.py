"""One AUC for the diagnostics and the rankers, and scipy's t quantile."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit import stats
from sidkit.diagnostics import retrieval
from sidkit.errors import ConfigError, DataError
from sidkit.ranking import metrics


def test_the_diagnostics_and_the_rankers_share_one_auc(monkeypatch):
    assert metrics.roc_auc is stats.roc_auc and retrieval.roc_auc is stats.roc_auc
    seen = []
    monkeypatch.setattr(retrieval, "roc_auc", lambda y, s: seen.append((y.tolist(), s.tolist())) or 0.25)
    assert retrieval.auc_score(np.array([0.9]), np.array([0.1, 0.2])) == 0.25
    assert seen == [([1, 0, 0], [0.9, 0.1, 0.2])]


def test_auc_by_brute_force_with_ties():
    rng = np.random.default_rng(1)
    pos, neg = rng.integers(0, 6, 40).astype(float), rng.integers(0, 5, 55).astype(float)
    pairs = [(1.0 if p > n else 0.5 if p == n else 0.0) for p in pos for n in neg]
    assert retrieval.auc_score(pos, neg) == pytest.approx(np.mean(pairs), abs=1e-12)
    with pytest.raises(DataError, match="one positive and one negative"):
        retrieval.auc_score(pos, np.array([]))


def test_t_quantile_known_values_and_symmetry():
    assert stats.t_quantile(0.975, 4) == pytest.approx(2.7764451051977987, rel=1e-12)
    assert stats.t_quantile(0.975, 1) == pytest.approx(12.706204736174707, rel=1e-12)
    assert stats.t_quantile(0.5, 3) == 0.0
    assert stats.t_quantile(0.1, 7) == pytest.approx(-stats.t_quantile(0.9, 7), rel=1e-12)
    for p, df in ((0.0, 3), (1.0, 3), (0.5, 0)):
        with pytest.raises(ConfigError):
            stats.t_quantile(p, df)
