"""RQ-KMeans tokenizer: exact encode/decode, save/load, determinism, balance, and input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from sidkit.errors import ConfigError, DataError, NotFittedError
from sidkit.ids import SemanticIds
from sidkit.tokenizers.base import Tokenizer, load_tokenizer
from sidkit.tokenizers.rq_kmeans import RQKMeans


def embeddings(n: int = 2000, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((30, dim))
    points = centers[rng.integers(0, 30, n)] + 0.5 * rng.standard_normal((n, dim))
    return points.astype(np.float32)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return embeddings()


@pytest.fixture(scope="module")
def fitted(data: np.ndarray) -> RQKMeans:
    return RQKMeans(levels=3, codebook_size=[16, 8, 8], seed=0).fit(data)


def residual_walk_float64(x: np.ndarray, codebooks: list[np.ndarray]) -> np.ndarray:
    residual = x.astype(np.float64)
    codes = []
    for codebook in codebooks:
        book = codebook.astype(np.float64)
        dist = ((residual[:, None, :] - book[None, :, :]) ** 2).sum(-1)
        chosen = dist.argmin(1)
        codes.append(chosen)
        residual = residual - book[chosen]
    return np.stack(codes, 1)


def test_shapes_and_sizes(fitted: RQKMeans, data: np.ndarray) -> None:
    ids = fitted.encode(data)
    assert isinstance(ids, SemanticIds)
    assert ids.codes.shape == (len(data), 3) and ids.codes.dtype == np.int64
    assert ids.sizes == fitted.codebook_sizes == (16, 8, 8)
    assert fitted.levels == 3 and fitted.dim == 16
    assert [tuple(c.shape) for c in fitted.codebooks] == [(16, 16), (8, 16), (8, 16)]


def test_encode_equals_float64_residual_walk(fitted: RQKMeans, data: np.ndarray) -> None:
    books = [c.numpy() for c in fitted.codebooks]
    np.testing.assert_array_equal(fitted.encode(data, batch_size=300).codes, residual_walk_float64(data, books))


def test_decode_is_sum_of_chosen_codewords(fitted: RQKMeans, data: np.ndarray) -> None:
    ids = fitted.encode(data)
    books = [c.numpy() for c in fitted.codebooks]
    expected = sum(books[level][ids.codes[:, level]] for level in range(3))
    np.testing.assert_allclose(fitted.decode(ids), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(fitted.decode(ids.codes), fitted.quantized(ids))
    assert fitted.decode(ids).dtype == np.float32


def test_fit_leaves_input_untouched(data: np.ndarray) -> None:
    before = data.copy()
    RQKMeans(levels=2, codebook_size=8).fit(data)
    np.testing.assert_array_equal(data, before)


def test_refinement_does_not_raise_training_error(data: np.ndarray) -> None:
    def error(model: RQKMeans) -> float:
        return float(((data - model.decode(model.encode(data))) ** 2).sum(1).mean())

    greedy = RQKMeans(levels=3, codebook_size=16, refine_passes=0).fit(data)
    refined = RQKMeans(levels=3, codebook_size=16, refine_passes=5).fit(data)
    assert error(refined) <= error(greedy) + 1e-6


def test_save_load_gives_identical_codes(fitted: RQKMeans, data: np.ndarray, tmp_path: Path) -> None:
    fitted.save(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    assert config["tokenizer"] == "RQKMeans" and config["sidkit_version"]
    for loaded in (RQKMeans.load(tmp_path / "model"), load_tokenizer(tmp_path / "model"),
                   Tokenizer.load(tmp_path / "model")):
        assert isinstance(loaded, RQKMeans)
        assert loaded.get_config() == fitted.get_config()
        np.testing.assert_array_equal(loaded.encode(data).codes, fitted.encode(data).codes)


def test_seed_reproduces_and_another_differs(data: np.ndarray) -> None:
    def codes(seed: int) -> np.ndarray:
        return RQKMeans(levels=2, codebook_size=16, seed=seed).fit(data).encode(data).codes

    np.testing.assert_array_equal(codes(3), codes(3))
    assert not np.array_equal(codes(3), codes(4))


def test_balanced_fit_caps_training_loads() -> None:
    rng = np.random.default_rng(1)
    skewed = np.concatenate([rng.standard_normal((1500, 8)) * 0.05, rng.standard_normal((500, 8)) * 3])
    plain = RQKMeans(levels=1, codebook_size=16).fit(skewed.astype(np.float32))
    balanced = RQKMeans(levels=1, codebook_size=16, balanced=True, balance_factor=1.2).fit(skewed)
    load = [np.bincount(m.encode(skewed).codes[:, 0], minlength=16).max() for m in (plain, balanced)]
    assert load[1] < load[0]


def test_fit_sample_limits_training_rows(data: np.ndarray) -> None:
    model = RQKMeans(levels=2, codebook_size=8, fit_sample=100).fit(data)
    assert model.encode(data).codes.shape == (len(data), 2)
    with pytest.raises(DataError, match="cannot fill a codebook"):
        RQKMeans(levels=1, codebook_size=64, fit_sample=50).fit(data)


def test_input_type_conversions(fitted: RQKMeans, data: np.ndarray) -> None:
    import torch

    reference = fitted.encode(data).codes
    np.testing.assert_array_equal(fitted.encode(data.astype(np.float64)).codes, reference)
    np.testing.assert_array_equal(fitted.encode(torch.from_numpy(data)).codes, reference)


@pytest.mark.parametrize(("bad", "message"), [
    (np.zeros(16, dtype=np.float32), "must be 2-d"),
    (np.zeros((0, 16), dtype=np.float32), "no rows"),
    (np.zeros((5, 7), dtype=np.float32), "expected embeddings of dimension 16"),
    (np.array([[np.nan] * 16], dtype=np.float32), "NaN or inf"),
    (np.array([[np.inf] * 16], dtype=np.float32), "NaN or inf"),
    (np.array([["a"] * 16]), "must be numbers"),
])
def test_bad_embeddings_are_data_errors(fitted: RQKMeans, bad: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message) as error:
        fitted.encode(bad)
    assert error.value.where == "encode(X)"


def test_fit_rejects_bad_embeddings_and_settings(data: np.ndarray) -> None:
    with pytest.raises(DataError, match="NaN"):
        RQKMeans(levels=1, codebook_size=4).fit(np.full((10, 3), np.nan))
    with pytest.raises(ConfigError, match="unknown device"):
        RQKMeans(levels=1, codebook_size=4).fit(data, device="nonsense")
    for kwargs in ({"levels": 0}, {"codebook_size": [4, 4]}, {"codebook_size": 0}, {"balance_factor": 0.9},
                   {"fit_sample": 0}, {"refine_passes": -1}, {"max_iter": -2}):
        with pytest.raises(ConfigError):
            RQKMeans(**{"levels": 3, **kwargs})


def test_not_fitted_errors(data: np.ndarray, tmp_path: Path) -> None:
    model = RQKMeans(levels=2, codebook_size=4)
    for call in (lambda: model.encode(data), lambda: model.decode(np.zeros((1, 2), dtype=np.int64)),
                 lambda: model.save(tmp_path), lambda: model.dim):
        with pytest.raises(NotFittedError, match="not fitted"):
            call()


def test_bad_codes_are_data_errors(fitted: RQKMeans) -> None:
    with pytest.raises(DataError, match="level 1 holds codes outside"):
        fitted.decode(np.array([[0, 8, 0]]))
    with pytest.raises(DataError, match="level 0 holds codes outside"):
        fitted.decode(np.array([[-1, 0, 0]]))
    with pytest.raises(DataError, match="shape"):
        fitted.decode(np.array([[0, 0]]))
    with pytest.raises(DataError, match="integers"):
        fitted.decode(np.array([[0.5, 0, 0]]))
    with pytest.raises(DataError, match="codebook sizes"):
        fitted.decode(SemanticIds(np.zeros((1, 3), dtype=np.int64), (4, 4, 4)))
    assert fitted.decode(np.zeros((0, 3), dtype=np.int64)).shape == (0, 16)


def test_loading_something_else_fails_clearly(fitted: RQKMeans, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a directory"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a sidkit model"):
        load_tokenizer(tmp_path / "empty")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"model_type": "bert"}')
    with pytest.raises(DataError, match="not a sidkit model"):
        load_tokenizer(tmp_path / "other")

    path = fitted.save(tmp_path / "model")
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, "format_version": 99}))
    with pytest.raises(DataError, match="newer sidkit") as error:
        load_tokenizer(path)
    assert error.value.fix == "upgrade sidkit"

    (path / "config.json").write_text(json.dumps({**config, "tokenizer": "NoSuchTokenizer"}))
    with pytest.raises(DataError, match="unknown tokenizer class"):
        load_tokenizer(path)

    (path / "config.json").write_text(json.dumps({**config, "dim": 3}))
    with pytest.raises(DataError, match="should have shape"):
        load_tokenizer(path)

    (path / "config.json").write_text(json.dumps(config))
    (path / "weights.safetensors").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read weights"):
        load_tokenizer(path)


def test_load_into_the_wrong_class_fails(fitted: RQKMeans, tmp_path: Path) -> None:
    class Other(Tokenizer):  # never registered: only checks the issubclass guard
        pass

    path = fitted.save(tmp_path / "model")
    with pytest.raises(DataError, match="holds a RQKMeans, not a Other"):
        Other.load(path)  # type: ignore[type-abstract]


def test_fit_work_counts_what_the_fit_did(data: np.ndarray) -> None:
    model = RQKMeans(levels=3, codebook_size=16, max_iter=7, refine_passes=2, fit_sample=1500, seed=0).fit(data)
    work = model.fit_work
    assert work is not None and work.training_rows == 1500
    assert work.seeding_rows == (32 * 16,) * 3
    assert all(0 <= it <= 7 for it in work.lloyd_iterations)
    # one scoring pass per iteration plus the convergence test, plus the exact final one in bfloat16
    assert all(p == it + 1 + int(work.bfloat16) for p, it in zip(work.assignment_passes, work.lloyd_iterations,
                                                                  strict=True))
    assert 1 <= work.refine_rounds <= 2


@pytest.mark.parametrize("bfloat16", [False, True])
def test_bfloat16_scoring_changes_speed_not_exactness(data: np.ndarray, bfloat16: bool) -> None:
    model = RQKMeans(levels=3, codebook_size=16, bfloat16=bfloat16, seed=0).fit(data)
    assert model.get_config()["bfloat16"] is bfloat16
    codes = model.encode(data).codes
    assert np.array_equal(codes, residual_walk_float64(data, [c.numpy() for c in model.codebooks]))
    reference = RQKMeans(levels=3, codebook_size=16, bfloat16=False, seed=0).fit(data)
    error = float(((data - model.decode(codes)) ** 2).sum(1).mean())
    base = float(((data - reference.decode(reference.encode(data))) ** 2).sum(1).mean())
    assert error == pytest.approx(base, rel=0.02)
    with pytest.raises(ConfigError, match="bfloat16"):
        RQKMeans(bfloat16="yes")  # type: ignore[arg-type]
