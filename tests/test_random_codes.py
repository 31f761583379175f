"""RandomCodes: uniform random codes, residual-mean codewords, nearest-item encoding, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.tokenizers.base import load_tokenizer
from sidkit.tokenizers.factory import make_tokenizer
from sidkit.tokenizers.random_codes import RandomCodes


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).normal(size=(400, 6)).astype(np.float32)


def test_codes_are_uniform_draws_that_encode_back(x):
    model = RandomCodes(levels=3, codebook_size=[4, 5, 3], seed=2).fit(x)
    ids = model.encode(x)
    assert ids.sizes == (4, 5, 3)
    assert np.array_equal(ids.codes, model.codes.numpy())  # each fitted item is its own nearest item
    for level, size in enumerate(ids.sizes):
        counts = np.bincount(ids.codes[:, level], minlength=size)
        assert counts.min() > 0.5 * len(x) / size  # roughly uniform
    # Codes carry no content: neighbours in embedding space share level 0 about as often as chance.
    nearest = np.argsort(((x[:, None] - x[None]) ** 2).sum(-1), axis=1)[:, 1]
    assert np.mean(ids.codes[:, 0] == ids.codes[nearest, 0]) < 0.4
    other = RandomCodes(levels=3, codebook_size=[4, 5, 3], seed=3).fit(x).encode(x)
    assert not np.array_equal(other.codes, ids.codes)
    assert np.array_equal(RandomCodes(levels=3, codebook_size=[4, 5, 3], seed=2).fit(x).encode(x).codes, ids.codes)


def test_codewords_are_residual_means(x):
    model = RandomCodes(levels=2, codebook_size=4, seed=0).fit(x)
    codes = model.codes.numpy()
    level0 = np.stack([x[codes[:, 0] == j].mean(axis=0) for j in range(4)])
    residual = x - level0[codes[:, 0]]
    level1 = np.stack([residual[codes[:, 1] == j].mean(axis=0) for j in range(4)])
    assert np.allclose(model.codebooks[0].numpy(), level0, atol=1e-5)
    assert np.allclose(model.codebooks[1].numpy(), level1, atol=1e-5)
    assert np.allclose(model.decode(model.encode(x)), level0[codes[:, 0]] + level1[codes[:, 1]], atol=1e-5)


def test_a_perturbed_item_keeps_its_codes_until_another_is_nearer(x):
    model = RandomCodes(levels=2, codebook_size=8, seed=0).fit(x)
    near = x + 1e-4
    assert np.array_equal(model.encode(near).codes, model.encode(x).codes)
    assert np.array_equal(model.encode(x[[7]] * 0.999 + x[[9]] * 0.001).codes, model.encode(x[[7]]).codes)


def test_save_load_and_factory(x, tmp_path):
    model = make_tokenizer("random", levels=2, codebook_size=8, seed=1).fit(x)
    model.save(tmp_path / "r")
    loaded = load_tokenizer(tmp_path / "r")
    assert isinstance(loaded, RandomCodes)
    assert loaded.encode(x).equals(model.encode(x))
    assert np.allclose(loaded.decode(model.encode(x)), model.decode(model.encode(x)))
