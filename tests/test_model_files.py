"""Saved tokenizers are validated on load and on save: a corrupted model is an error, never used."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sidkit.cli import main
from sidkit.errors import DataError, StorageError
from sidkit.tokenizers.base import load_tokenizer
from sidkit.tokenizers.rq_kmeans import RQKMeans
from sidkit.tokenizers.rq_vae import RQVAE

pytestmark = pytest.mark.usefixtures("one_thread")
X = np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    RQKMeans(2, 8, seed=0).fit(X).save(root / "rqk")
    RQKMeans(2, 4, seed=0).fit(X).save(root / "rqk4")
    RQVAE(2, 4, epochs=1, hidden_dims=(16,), latent_dim=4, seed=0).fit(X).save(root / "vae")
    return root


def edit_weights(path, change):
    tensors = load_file(str(path / "weights.safetensors"))
    save_file(change(dict(tensors)), str(path / "weights.safetensors"), metadata={"format": "sidkit-tokenizer"})


def edit_config(path, change):
    config = json.loads((path / "config.json").read_text())
    change(config)
    (path / "config.json").write_text(json.dumps(config))


def poisoned(tensors, name, value):
    tensor = tensors[name].clone()
    tensor.view(-1)[0] = value
    return {**tensors, name: tensor}


def fewer_levels(config):
    config["config"]["levels"] = 1
    config["codebook_sizes"] = [8]


CORRUPTIONS = {
    "NaN in a codebook": (lambda m: edit_weights(m, lambda t: poisoned(t, "codebook.0", float("nan"))), "NaN or inf"),
    "inf in a codebook": (lambda m: edit_weights(m, lambda t: poisoned(t, "codebook.1", float("inf"))), "NaN or inf"),
    "fewer levels in the config than in the weights": (lambda m: edit_config(m, fewer_levels),
                                                       r"1 levels.*unexpected \['codebook.1'\]"),
    "more levels in the config": (lambda m: edit_config(m, lambda c: (c["config"].update(levels=3), c.update(
        codebook_sizes=[8, 8, 8]))), "codebook.2 should have shape"),
    "an extra tensor": (lambda m: edit_weights(m, lambda t: {**t, "codebook.2": torch.zeros(8, 8)}), "names or shapes"),
    "integer weights": (lambda m: (edit_weights(m, lambda t: {k: v.to(torch.int32) for k, v in t.items()}),
                                   edit_config(m, lambda c: c.pop("weights"))), "other shapes or types"),
    "weights of another model": (lambda m: shutil.copy(m.parent / "rqk4" / "weights.safetensors",
                                                       m / "weights.safetensors"), "names or shapes"),
    "a list as the class name": (lambda m: edit_config(m, lambda c: c.update(tokenizer=["RQKMeans"])),
                                 "must be a class name"),
    "an unknown class": (lambda m: edit_config(m, lambda c: c.update(tokenizer="os.system")), "unknown tokenizer"),
    "dim true": (lambda m: edit_config(m, lambda c: c.update(dim=True)), "'dim' must be a positive integer"),
    "dim negative": (lambda m: edit_config(m, lambda c: c.update(dim=-3)), "'dim' must be a positive integer"),
    "levels as a string": (lambda m: edit_config(m, lambda c: c["config"].update(levels="2")), "do not fit"),
    "codebook size 1 in the config": (lambda m: edit_config(m, lambda c: c["config"].update(codebook_size=1)),
                                      "at least 2"),
    "codebook sizes that disagree": (lambda m: edit_config(m, lambda c: c.update(codebook_sizes=[4, 4])),
                                     "records codebook sizes"),
    "truncated weights": (lambda m: (m / "weights.safetensors").write_bytes(
        (m / "weights.safetensors").read_bytes()[:100]), "cannot read weights"),
    "config not JSON": (lambda m: (m / "config.json").write_text("{not json"), "not valid JSON"),
    "config binary": (lambda m: (m / "config.json").write_bytes(bytes(range(256))), "not valid JSON"),
    "config a list": (lambda m: (m / "config.json").write_text("[1, 2]"), "is not a sidkit model"),
    "a huge format version": (lambda m: edit_config(m, lambda c: c.update(format_version=10**30)), "newer sidkit"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_a_corrupted_model_is_refused_on_load(saved, tmp_path, case):
    corrupt, words = CORRUPTIONS[case]
    model = tmp_path / "m"
    shutil.copytree(saved / "rqk", model)
    shutil.copytree(saved / "rqk4", tmp_path / "rqk4")
    corrupt(model)
    with pytest.raises(DataError, match=words) as caught:
        load_tokenizer(model)
    assert caught.value.fix


def test_a_corrupted_neural_model_is_refused_too(saved, tmp_path):
    model = tmp_path / "vae"
    shutil.copytree(saved / "vae", model)
    name = next(k for k in load_file(str(model / "weights.safetensors")) if k.startswith("net.") and "weight" in k)
    edit_weights(model, lambda t: poisoned(t, name, float("nan")))
    with pytest.raises(DataError, match=f"weight {name} holds 1 NaN"):
        load_tokenizer(model)
    assert load_tokenizer(saved / "vae").history is not None  # its NaN-holding history is no weight


def test_commands_refuse_a_corrupted_model_in_one_line_and_write_nothing(saved, tmp_path, capsys):
    model = tmp_path / "m"
    shutil.copytree(saved / "rqk", model)
    edit_weights(model, lambda t: poisoned(t, "codebook.0", float("nan")))
    np.save(tmp_path / "x.npy", X)
    for args in (["encode", "--model", str(model), "--embeddings", str(tmp_path / "x.npy"),
                  "--out", str(tmp_path / "c.parquet")],
                 ["diagnose", "--model", str(model), "--embeddings", str(tmp_path / "x.npy")]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "NaN or inf" in err and "Fix:" in err and "\n" not in err
    assert not (tmp_path / "c.parquet").exists()


def test_non_finite_weights_are_never_saved(tmp_path):
    model = RQKMeans(1, 2, seed=0).fit(X)
    model.codebooks[0][0, 0] = float("nan")
    with pytest.raises(DataError, match="not saved"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


def test_saving_replaces_an_earlier_model_but_nothing_else(saved, tmp_path):
    target = tmp_path / "m"
    shutil.copytree(saved / "rqk", target)
    RQKMeans(3, 4, seed=0).fit(X).save(target)
    assert load_tokenizer(target).codebook_sizes == (4, 4, 4)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine")
    with pytest.raises(StorageError, match="not a model directory"):
        RQKMeans(1, 2, seed=0).fit(X).save(other)
    assert (other / "todo.txt").read_text() == "mine"


def test_float32_input_near_overflow_is_refused_before_fitting(tmp_path, capsys):
    x = X.copy()
    x[5] *= 1e19
    np.save(tmp_path / "big.npy", x)
    for method in ("rq-kmeans", "rq-vae"):
        assert main(["fit", "--method", method, "--levels", "1", "--codebook-size", "2", "--embeddings",
                     str(tmp_path / "big.npy"), "--out", str(tmp_path / "m"),
                     *([] if method == "rq-kmeans" else ["--epochs", "1"])]) == 2
        line = capsys.readouterr().err.strip()
        assert "rows 5" in line and "Fix:" in line
    assert not (tmp_path / "m").exists()
