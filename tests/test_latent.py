"""Neural tokenizers expose the latent space they quantize, so the analytic overlap covers them."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.diagnostics.overlap import analytic_expected_overlap
from sidkit.tokenizers.drq import DRQVAE
from sidkit.tokenizers.rq_vae import RQVAE


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(12, 24))
    return (centers[rng.integers(0, 12, 600)] + 0.2 * rng.normal(size=(600, 24))).astype(np.float32)


def small(cls):
    return cls(levels=2, codebook_size=8, latent_dim=6, hidden_dims=(32,), epochs=2, batch_size=128,
               progress=False, seed=0)


def test_drq_codes_are_rq_kmeans_of_the_latent(x):
    tokenizer = small(DRQVAE).fit(x)
    latent = tokenizer.latent(x)
    assert latent.shape == (600, 6) and latent.dtype == np.float32
    np.testing.assert_array_equal(tokenizer.quantizer.encode(latent).codes, tokenizer.encode(x).codes)


@pytest.mark.parametrize("cls", [RQVAE, DRQVAE])
def test_analytic_overlap_runs_in_the_latent_space(cls, x):
    tokenizer = small(cls).fit(x)
    report = analytic_expected_overlap(tokenizer, x, rho=0.1)
    assert len(report.levels) == 2
    for level in report.levels:
        assert 1.0 <= level.stats.effective_size <= level.stats.nominal_size + 1e-9
