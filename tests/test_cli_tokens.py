"""`sidkit fit`, `encode` and `diagnose` on a small file, checked against the Python API."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from sidkit.cli import main
from sidkit.diagnostics.basic import basic_diagnostics
from sidkit.diagnostics.reconstruction import reconstruction_report
from sidkit.diagnostics.usage import usage_report
from sidkit.tokenizers.base import load_tokenizer


@pytest.fixture(scope="module")
def embeddings_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(20, 16))
    x = (centers[rng.integers(0, 20, 1500)] + 0.3 * rng.normal(size=(1500, 16))).astype(np.float32)
    path = tmp_path_factory.mktemp("emb") / "x.npy"
    np.save(path, x)
    return path


@pytest.fixture(scope="module")
def model_dir(embeddings_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("model")
    code = main(["fit", "--method", "rq-kmeans", "--levels", "3", "--codebook-size", "16",
                 "--embeddings", str(embeddings_file), "--out", str(out), "--seed", "1"])
    assert code == 0
    return out


def test_encode_matches_the_api(model_dir, embeddings_file, tmp_path):
    assert main(["encode", "--model", str(model_dir), "--embeddings", str(embeddings_file),
                 "--out", str(tmp_path / "codes.npy")]) == 0
    codes = np.load(tmp_path / "codes.npy")
    expected = load_tokenizer(model_dir).encode(np.load(embeddings_file)).codes
    np.testing.assert_array_equal(codes, expected)
    assert main(["encode", "--model", str(model_dir), "--embeddings", str(embeddings_file),
                 "--out", str(tmp_path / "codes.parquet")]) == 0
    table = pq.read_table(tmp_path / "codes.parquet")
    np.testing.assert_array_equal(table.column("level_2").to_numpy(), expected[:, 2])
    assert table.column("sid")[0].as_py() == "-".join(str(c) for c in expected[0])


def test_diagnose_json(model_dir, embeddings_file, tmp_path, capsys):
    out = tmp_path / "d.json"
    assert main(["diagnose", "--model", str(model_dir), "--embeddings", str(embeddings_file),
                 "--json", str(out)]) == 0
    assert "perplexity" in capsys.readouterr().out
    metrics = json.loads(out.read_text())
    assert len(metrics["usage"]) == 3
    assert set(metrics["usage"][0]) >= {"active", "dead", "perplexity", "entropy_ratio", "gini"}
    assert set(metrics["sid"]) == {"unique_ratio", "collision_rate", "max_bucket"}
    assert set(metrics["reconstruction"]) == {"mse", "relative_error", "cosine"}
    tokenizer = load_tokenizer(model_dir)
    x = np.load(embeddings_file)
    ids = tokenizer.encode(x)
    assert metrics["usage"][1]["active"] == usage_report(ids).levels[1].active
    assert metrics["reconstruction"]["mse"] == pytest.approx(
        reconstruction_report(x, tokenizer.decode(ids)).mse, rel=1e-9)


def test_diagnose_reports_the_overlap_as_compare_does(model_dir, embeddings_file, tmp_path, capsys):
    from sidkit.diagnostics.overlap import overlap_sweep

    out = tmp_path / "d.json"
    assert main(["diagnose", "--model", str(model_dir), "--embeddings", str(embeddings_file), "--rho", "0.1,0.3",
                 "--samples", "4", "--seed", "2", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "K_eff" in printed and "flip" in printed and "±" in printed
    (first, second) = json.loads(out.read_text())["overlap"]
    expected = overlap_sweep(load_tokenizer(model_dir), np.load(embeddings_file), (0.1, 0.3), 4, seed=2)
    for got, want in ((first, expected.reports[0]), (second, expected.reports[1])):
        assert got["rho"] == want.rho and got["samples"] == 4
        for entry, reference in zip(got["levels"] + got["depths"], want.levels + want.depths, strict=True):
            assert entry["effective_size"] == pytest.approx(reference.stats.effective_size, rel=1e-9)
            assert entry["effective_size_se"] == pytest.approx(reference.stats.effective_size_se, rel=1e-6)
            assert entry["distribution_penalty"] == pytest.approx(reference.stats.distribution_penalty, rel=1e-9)
            assert entry["geometry_penalty"] == pytest.approx(reference.stats.geometry_penalty, rel=1e-6, abs=1e-12)
            assert entry["flip_rate"] == pytest.approx(reference.flip_rate, rel=1e-9)
    assert main(["diagnose", "--model", str(model_dir), "--embeddings", str(embeddings_file), "--samples",
                 "2"]) == 2
    assert "samples must be an integer >= 3" in capsys.readouterr().err


def test_chunked_diagnostics_equal_one_shot(model_dir, embeddings_file):
    tokenizer = load_tokenizer(model_dir)
    x = np.load(embeddings_file)
    chunked = basic_diagnostics(tokenizer, x, chunk_rows=97)
    ids = tokenizer.encode(x)
    assert chunked.usage == usage_report(ids)
    assert chunked.reconstruction.mse == pytest.approx(reconstruction_report(x, tokenizer.decode(ids)).mse,
                                                       rel=1e-9)


def test_fit_with_data_dir_and_errors(embeddings_file, tmp_path, capsys):
    assert main(["fit", "--method", "nope", "--embeddings", str(embeddings_file), "--out",
                 str(tmp_path / "m")]) == 2
    assert "unknown tokenizer method" in capsys.readouterr().err
    assert main(["fit", "--out", str(tmp_path / "m")]) == 2
    assert "exactly one of --embeddings and --data" in capsys.readouterr().err
    np.save(tmp_path / "wrong.npy", np.ones((10, 5), np.float32))
    model = tmp_path / "m2"
    assert main(["fit", "--levels", "2", "--codebook-size", "4", "--embeddings", str(embeddings_file),
                 "--out", str(model)]) == 0
    capsys.readouterr()
    assert main(["encode", "--model", str(model), "--embeddings", str(tmp_path / "wrong.npy"),
                 "--out", str(tmp_path / "c.npy")]) == 2
    err = capsys.readouterr().err
    assert "dimension 16" in err and "Traceback" not in err
    assert not (tmp_path / "c.npy").exists()
    assert main(["encode", "--model", str(model), "--embeddings", str(embeddings_file),
                 "--out", str(tmp_path / "c.txt")]) == 2
