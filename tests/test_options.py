"""Options are checked before any work starts: one error line with a Fix:, and no output written."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.checks import MAX_LEVELS, MAX_SEED, check_float, check_int, check_seed, level_sizes
from sidkit.cli import main
from sidkit.errors import ConfigError
from sidkit.tokenizers.factory import make_tokenizer


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Fix:" in lines[0], err
    return lines[0]


@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 2**64 + 5, 1.5, True, "3"])
def test_seeds_outside_their_range_are_refused(seed):
    with pytest.raises(ConfigError, match="seed must be an integer from 0 to"):
        check_seed(seed)
    with pytest.raises(ConfigError, match="seed"):
        make_tokenizer("rq-kmeans", levels=2, codebook_size=4, seed=seed)


def test_the_checks_accept_what_they_should():
    assert check_seed(0) == 0 and check_seed(MAX_SEED) == MAX_SEED and check_seed(np.int64(7)) == 7
    assert check_int(5, where="x") == 5 and check_float(0.5, where="x", low=0, low_open=True) == 0.5
    assert level_sizes(3, 4) == (4, 4, 4) and level_sizes(2, [8, 3]) == (8, 3)


@pytest.mark.parametrize(("levels", "size", "words"), [
    (0, 4, "levels must be an integer from 1 to 64"), (MAX_LEVELS + 1, 4, "from 1 to 64"), (2**70, 4, "from 1 to"),
    (2, 1, "codebook_size must be an integer at least 2"), (2, 0, "at least 2"), (2, 2**70, "too large"),
    (2, [4], "1 codebook sizes for 2 levels"), (2, "4", "one integer per level"),
])
def test_levels_and_codebook_sizes_are_checked_the_same_everywhere(levels, size, words):
    for method in ("rq-kmeans", "rq-vae", "drq-vae"):
        with pytest.raises(ConfigError, match=words) as caught:
            make_tokenizer(method, levels=levels, codebook_size=size)
        assert caught.value.fix


@pytest.mark.parametrize(("name", "value"), [("latent_dim", 0), ("latent_dim", 2**70), ("epochs", 0),
                                           ("epochs", -1), ("batch_size", 0), ("batch_size", True)])
def test_neural_sizes_are_checked(name, value):
    with pytest.raises(ConfigError, match=name) as caught:
        make_tokenizer("rq-vae", levels=2, codebook_size=4, **{name: value})
    assert caught.value.fix


def test_a_size_past_the_ceiling_says_it_cannot_be_held_in_memory():
    with pytest.raises(ConfigError, match=r"latent_dim = 1000000000000 is too large.*memory") as caught:
        make_tokenizer("rq-vae", levels=2, codebook_size=4, latent_dim=10**12)
    assert "smaller latent_dim" in caught.value.fix


@pytest.fixture(scope="module")
def embeddings(tmp_path_factory):
    path = tmp_path_factory.mktemp("x") / "x.npy"
    np.save(path, np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32))
    return path


@pytest.mark.parametrize("extra", [
    ["--seed", "-1"], ["--seed", str(2**64 + 5)], ["--levels", "1000000"], ["--levels", str(2**70)],
    ["--levels", "0"], ["--codebook-size", "1"], ["--codebook-size", "0"],
    ["--method", "rq-vae", "--latent-dim", str(2**70)], ["--method", "rq-vae", "--epochs", "0"],
    ["--method", "rq-vae", "--batch-size", "0"], ["--fit-sample", "0"],
])
def test_fit_refuses_bad_options_in_one_line(embeddings, tmp_path, capsys, extra):
    assert main(["fit", "--embeddings", str(embeddings), "--out", str(tmp_path / "m"), *extra]) == 2
    one_error_line(capsys)
    assert not (tmp_path / "m").exists()


def test_codebook_size_1_is_refused_by_fit_and_compare_alike(embeddings, tmp_path, capsys):
    assert main(["fit", "--embeddings", str(embeddings), "--out", str(tmp_path / "m"), "--codebook-size", "1"]) == 2
    fit_line = one_error_line(capsys)
    assert main(["compare", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "c"),
                 "--codebook-size", "1"]) == 2
    compare_line = one_error_line(capsys)
    assert "at least 2" in fit_line and "at least 2" in compare_line


@pytest.mark.parametrize("extra", [
    ["--rho", "inf"], ["--rho", "-0.1"], ["--rho", "nan"], ["--rho", "0"], ["--reference-rho", "inf"],
    ["--samples", "0"], ["--samples", "-3"], ["--seed", "-1"], ["--epochs", "0"], ["--levels", "0"],
])
def test_compare_checks_rho_samples_and_the_rest_before_loading_or_fitting(tmp_path, capsys, extra):
    # The dataset does not exist: an option error must come first, so nothing was read or fitted.
    assert main(["compare", "--data", str(tmp_path / "no-such-data"), "--out", str(tmp_path / "c"), *extra]) == 2
    line = one_error_line(capsys)
    assert "no-such-data" not in line
    assert not (tmp_path / "c").exists()


def test_rho_inf_is_blamed_on_rho(tmp_path, capsys):
    assert main(["compare", "--data", str(tmp_path), "--out", str(tmp_path / "c"), "--rho", "0.1,inf"]) == 2
    assert "rho must be a finite number > 0" in one_error_line(capsys)


@pytest.mark.parametrize("extra", [
    ["--history", "0"], ["--history", "-1"], ["--seeds", "0"], ["--negatives", "0"], ["--batch-size", "0"],
    ["--learning-rate", "nan"], ["--learning-rate", "0"], ["--item-holdout", "2"], ["--item-holdout", "1"],
])
def test_rank_checks_its_options_before_loading_anything(tmp_path, capsys, extra):
    assert main(["rank", "--data", str(tmp_path / "no-such-data"), "--out", str(tmp_path / "r"), *extra]) == 2
    line = one_error_line(capsys)
    assert "no-such-data" not in line
    assert not (tmp_path / "r").exists()
