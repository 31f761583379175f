"""scikit-learn conventions of every tokenizer: explicit keywords, get_params/set_params, repr, the seed."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest

from sidkit.errors import ConfigError, NotFittedError
from sidkit.tokenizers.base import Tokenizer, constructor_parameters, load_tokenizer
from sidkit.tokenizers.drq import DRQVAE
from sidkit.tokenizers.rq_kmeans import RQKMeans
from sidkit.tokenizers.rq_vae import RQPVAE, RQVAE

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = [RQKMeans, RQVAE, RQPVAE, DRQVAE]
TINY = {"latent_dim": 4, "hidden_dims": (8,), "epochs": 2, "batch_size": 64, "progress": False}


def small(cls: type[Tokenizer], **params: object) -> Tokenizer:
    extra = {} if cls is RQKMeans else TINY
    return cls(levels=2, codebook_size=4, **{**extra, **params})  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(size=(8, 6))[rng.integers(0, 8, 160)] + 0.1 * rng.normal(size=(160, 6))).astype(np.float32)


@pytest.mark.parametrize("cls", CLASSES)
def test_every_setting_is_an_explicit_keyword_that_get_params_returns(cls):
    kinds = {p.kind for p in inspect.signature(cls).parameters.values()}
    assert inspect.Parameter.VAR_KEYWORD not in kinds and inspect.Parameter.VAR_POSITIONAL not in kinds
    names = constructor_parameters(cls)
    assert "seed" in names
    if cls is not RQKMeans:
        assert {"epochs", "batch_size", "latent_dim", "hidden_dims", "learning_rate"} <= set(names)
    params = cls().get_params()
    assert list(params) == list(names), "get_params must list the constructor's parameters in its order"
    # Defaults come back as given (tuples as JSON lists).
    for name, parameter in inspect.signature(cls).parameters.items():
        default = parameter.default
        expected = list(default) if isinstance(default, tuple) else default
        assert params[name] == expected, name


@pytest.mark.parametrize("cls", CLASSES)
def test_get_params_rebuilds_an_equal_unfitted_copy(cls):
    tokenizer = small(cls, seed=5)
    copy = cls(**tokenizer.get_params())
    assert copy.get_params() == tokenizer.get_params() and not copy.is_fitted
    assert tokenizer.get_params(deep=False) == tokenizer.get_params()


def test_repr_shows_only_the_settings_that_differ_from_the_defaults():
    assert repr(RQKMeans()) == "RQKMeans()"
    assert repr(RQKMeans(levels=3, codebook_size=16, seed=1)) == "RQKMeans(codebook_size=16, seed=1)"
    assert repr(RQKMeans(4, [16, 8, 8, 4], balanced=True)) == \
        "RQKMeans(levels=4, codebook_size=[16, 8, 8, 4], balanced=True)"
    assert repr(RQVAE(hidden_dims=(512, 256, 128), epochs=20)) == "RQVAE(epochs=20)"
    assert repr(DRQVAE(contrastive=True, hidden_dims=[64])) == "DRQVAE(hidden_dims=[64], contrastive=True)"
    assert "object at 0x" not in repr(RQPVAE(decay=0.9))


@pytest.mark.parametrize("cls", CLASSES)
def test_set_params_checks_names_and_values_and_unfits(cls, x):
    tokenizer = small(cls).fit(x)
    assert tokenizer.set_params(seed=3) is tokenizer
    assert tokenizer.seed == 3 and tokenizer.get_params()["seed"] == 3
    with pytest.raises(NotFittedError):  # weights learnt with the old settings are dropped
        tokenizer.encode(x)
    with pytest.raises(ConfigError, match=r"no parameter 'sede'.*Fix: use some of: levels"):
        tokenizer.set_params(sede=3)
    with pytest.raises(ConfigError, match="levels"):
        tokenizer.set_params(levels=0)
    assert tokenizer.get_params()["levels"] == 2, "a refused set_params leaves the tokenizer unchanged"
    tokenizer.set_params(codebook_size=[4, 2])
    assert tokenizer.codebook_sizes == (4, 2) and tokenizer.fit(x).encode(x).sizes == (4, 2)


@pytest.mark.parametrize("cls", CLASSES)
def test_the_seed_is_a_constructor_argument_saved_in_the_config(cls, x, tmp_path):
    first = small(cls, seed=11).fit(x)
    again = small(cls, seed=11).fit(x)
    other = small(cls, seed=12).fit(x)
    np.testing.assert_array_equal(first.encode(x).codes, again.encode(x).codes)
    assert not np.array_equal(first.quantized(first.encode(x)), other.quantized(other.encode(x)))
    first.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert config["seed"] == 11
    loaded = load_tokenizer(tmp_path / "m")
    assert loaded.seed == 11 and loaded.get_params() == first.get_params()
    # Refitting the loaded model from its saved settings reproduces the codes.
    np.testing.assert_array_equal(type(loaded)(**loaded.get_params()).fit(x).encode(x).codes,
                                  first.encode(x).codes)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_a_bad_seed_is_refused_by_the_constructor(seed):
    with pytest.raises(ConfigError, match="seed"):
        RQKMeans(seed=seed)


def test_fit_takes_no_seed(x):
    assert "seed" not in inspect.signature(RQKMeans.fit).parameters
    assert "seed" not in inspect.signature(DRQVAE.fit).parameters
    with pytest.raises(TypeError):
        RQKMeans(2, 4).fit(x, seed=0)  # type: ignore[call-arg]
