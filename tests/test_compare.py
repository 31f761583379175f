"""The comparison runner and `sidkit compare` on a tiny synthetic dataset: outputs, errors, pairs for +CL."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from sidkit import compare as compare_module
from sidkit.cli import main
from sidkit.compare import (
    SUMMARY_KEYS,
    CompareSettings,
    check_methods,
    default_codebook_size,
    fit_method,
    parse_method_spec,
    run_comparison,
    split_methods,
)
from sidkit.data.pairs import BehaviourPairs
from sidkit.data.synthetic import SyntheticConfig, write_synthetic
from sidkit.errors import ConfigError
from sidkit.ids import SemanticIds
from sidkit.tokenizers.base import load_tokenizer
from sidkit.tokenizers.rq_kmeans import RQKMeans

FAST = CompareSettings(levels=2, codebook_size=8, rhos=(0.05, 0.1, 0.3), samples=3, neighbours=5)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "synth"
    config = SyntheticConfig(items=500, users=80, interactions=6000, dim=16, topics=(4, 4, 2), seed=0)
    write_synthetic(config, out)
    return out


@pytest.fixture(scope="module")
def comparison(tiny_data, tmp_path_factory):
    return run_comparison(tiny_data, ["rq-kmeans"], tmp_path_factory.mktemp("run"), FAST, report=False)


def test_outputs_are_written(comparison):
    out = comparison.out_dir
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["method"] for m in metrics["methods"]] == ["rq-kmeans"]
    method = metrics["methods"][0]
    for key in ("usage", "sid", "reconstruction", "overlap", "analytic_overlap", "retention", "sid_embedding_auc",
                "hierarchy", "stability"):
        assert method[key] is not None, key
    assert len(method["overlap"]) == 3 and len(method["overlap"][0]["depths"]) == 2
    assert metrics["settings"]["codebook_size"] == 8
    assert metrics["summary"][0]["method"] == "rq-kmeans"
    summary = (out / "summary.md").read_text()
    assert "| method | fit s ↓ |" in summary and "## Overlap per level and depth" in summary
    assert "↑ higher is better" in summary and " ± " in summary  # directions and 95% intervals
    assert "novel" in summary
    codes = SemanticIds.from_table(pq.read_table(out / "codes" / "rq-kmeans.parquet"))
    assert codes.equals(comparison.method("rq-kmeans").codes)
    model = load_tokenizer(out / "models" / "rq-kmeans")
    assert model.encode(comparison.embeddings).equals(codes)


def test_summary_rows_hold_every_column(comparison):
    (row,) = comparison.summary_rows()
    assert set(row) == set(SUMMARY_KEYS)
    assert 1.0 <= row["level0_keff"] <= 8
    assert 0.0 <= row["sid_flip_rate"] <= 1.0
    assert row["agreement_l1"] is not None and 0.0 < row["agreement_l1"] <= 1.0
    result = comparison.method("rq-kmeans")
    assert result.retention is not None and result.retention.cutoffs == (20, 50, 100, 200)
    assert result.analytic is not None and result.analytic_note is None


def test_unknown_methods_name_the_available_ones():
    with pytest.raises(ConfigError, match="not available") as error:
        check_methods(["rq-kmeans", "no-such-vae"])
    assert "rq-kmeans" in str(error.value) and "no-such-vae" in str(error.value)
    with pytest.raises(ConfigError, match="twice"):
        check_methods(["rq-kmeans", "RQ-KMeans"])


def test_method_specs_carry_checked_settings():
    spec = parse_method_spec("rq-vae@epochs=50@hidden_dims=(64, 32)@bfloat16=false")
    assert spec.method == "rq-vae" and spec.label == "rq-vae@epochs=50@hidden_dims=(64, 32)@bfloat16=false"
    assert dict(spec.options) == {"epochs": 50, "hidden_dims": (64, 32), "bfloat16": False}
    assert [s.label for s in check_methods(["rq-vae", "rq-vae@epochs=20"])] == ["rq-vae", "rq-vae@epochs=20"]
    assert split_methods("rq-kmeans, rq-vae@hidden_dims=(64,32),drq-vae") == [
        "rq-kmeans", "rq-vae@hidden_dims=(64,32)", "drq-vae"]
    with pytest.raises(ConfigError, match="has no setting 'epoch'") as error:
        parse_method_spec("rq-vae@epoch=5")
    assert "epochs" in str(error.value)
    with pytest.raises(ConfigError, match="set by the comparison"):
        parse_method_spec("rq-kmeans@seed=3")
    with pytest.raises(ConfigError, match="cannot read setting"):
        parse_method_spec("rq-kmeans@balanced")


def test_epochs_and_patience_reach_neural_constructors_under_a_specs_own_settings(monkeypatch):
    seen = {}

    class Recording(RQKMeans):
        def __init__(self, *args, epochs=1, patience=1, **kwargs):
            seen.update(epochs=epochs, patience=patience)
            super().__init__(*args, **kwargs)

    monkeypatch.setitem(compare_module.METHODS, "fake-vae", Recording)
    pairs = BehaviourPairs(np.zeros((0, 2), dtype=np.int64), np.zeros((0, 2), dtype=np.int64), 0, 5)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    settings = CompareSettings(levels=2, codebook_size=4)
    fit_method("fake-vae", x, pairs, settings, seed=0)
    assert seen == {"epochs": 300, "patience": 20}
    fit_method("fake-vae@epochs=7", x, pairs, settings, seed=0)
    assert seen == {"epochs": 7, "patience": 20}


def test_two_settings_of_one_method_and_a_fitted_model_side_by_side(tiny_data, tmp_path):
    from sidkit.data.dataset import load_dataset

    x = load_dataset(tiny_data).catalog.embeddings
    mine = RQKMeans(levels=2, codebook_size=8, seed=5).fit(x)
    mine.save(tmp_path / "mine")
    result = run_comparison(tiny_data, ["rq-kmeans", "rq-kmeans@fit_sample=128"], tmp_path / "run", FAST,
                            fitted={"mine": tmp_path / "mine"}, report=False)
    assert [m.method for m in result.methods] == ["rq-kmeans", "rq-kmeans@fit_sample=128", "mine"]
    fitted = result.method("mine")
    assert fitted.fit_seconds is None and fitted.codes.equals(mine.encode(x))
    assert fitted.stability is not None  # refitted with seed 6 for the stability check
    assert (tmp_path / "run" / "models" / "rq-kmeans@fit_sample=128").is_dir()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["methods"][1]["spec"]["options"] == {"fit_sample": 128}
    assert metrics["methods"][2]["spec"]["fitted"] is True


def test_novel_pairs_are_measured_beside_all_held_out_pairs(comparison):
    from sidkit.diagnostics.retrieval import novel_pairs

    result = comparison.method("rq-kmeans")
    assert 0 < comparison.novel_pairs <= comparison.heldout_pairs
    assert result.retention_novel is not None and result.auc_novel is not None
    assert result.auc_novel.num_positive == comparison.novel_pairs
    assert result.retention_novel.original.num_pairs == comparison.novel_pairs
    assert comparison.novel_pairs == len(novel_pairs(*_pairs_of(comparison)))


def _pairs_of(comparison):
    from sidkit.data.dataset import load_dataset
    from sidkit.data.pairs import behaviour_pairs

    dataset = load_dataset(comparison.data_dir)
    pairs = behaviour_pairs(dataset.interactions, dataset.catalog, window=comparison.settings.window)
    return pairs.heldout, pairs.train


def test_contrastive_methods_get_the_train_pairs_only(monkeypatch):
    seen = {}

    class Recording(RQKMeans):
        def fit(self, X, *, pairs=None, device="cpu"):  # type: ignore[override]
            seen["pairs"] = pairs
            return super().fit(X, device=device)

    monkeypatch.setitem(compare_module.METHODS, "fake-cl", Recording)
    train = np.array([[0, 1], [2, 3]])
    pairs = BehaviourPairs(train=train, heldout=np.array([[4, 5]]), split_time=10, window=5)
    x = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    fit_method("fake-cl", x, pairs, FAST, seed=0)
    assert seen["pairs"] is train


def test_a_contrastive_method_that_takes_no_pairs_is_refused(monkeypatch):
    monkeypatch.setitem(compare_module.METHODS, "plain-cl", RQKMeans)
    pairs = BehaviourPairs(np.array([[0, 1]]), np.zeros((0, 2), dtype=np.int64), 0, 5)
    with pytest.raises(ConfigError, match="needs behaviour pairs"):
        fit_method("plain-cl", np.ones((16, 2), dtype=np.float32), pairs, FAST, seed=0)


def test_default_codebook_size():
    assert default_codebook_size(1682) == 64
    assert default_codebook_size(10**6) == 256
    assert default_codebook_size(50) == 8


def test_settings_are_checked(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="reference rho"):
        run_comparison(tiny_data, ["rq-kmeans"], tmp_path, CompareSettings(rhos=(0.2,), reference_rho=0.1))


def test_cli_compare(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    status = main(["compare", "--data", str(tiny_data), "--methods", "rq-kmeans", "--out", str(out),
                   "--levels", "2", "--codebook-size", "8", "--rho", "0.1,0.3", "--samples", "3",
                   "--no-stability", "--no-report"])
    printed = capsys.readouterr().out
    assert status == 0
    assert "rq-kmeans" in printed and "metrics.json" in printed and "↓" in printed
    assert (out / "metrics.json").is_file() and not (out / "report.html").exists()
    assert json.loads((out / "metrics.json").read_text())["methods"][0]["stability"] is None


def test_cli_compare_unknown_method_exits_2(tiny_data, tmp_path, capsys):
    status = main(["compare", "--data", str(tiny_data), "--methods", "rq-kmeans,nope", "--out", str(tmp_path)])
    assert status == 2
    assert "use some of: rq-kmeans" in capsys.readouterr().err


def test_cli_compare_takes_a_fitted_model(tiny_data, tmp_path, capsys):
    from sidkit.data.dataset import load_dataset

    RQKMeans(levels=2, codebook_size=8, seed=1).fit(load_dataset(tiny_data).catalog.embeddings).save(tmp_path / "m")
    status = main(["compare", "--data", str(tiny_data), "--model", f"mine={tmp_path / 'm'}", "--out",
                   str(tmp_path / "run"), "--rho", "0.1", "--samples", "3", "--no-stability", "--no-report"])
    assert status == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert [m["method"] for m in metrics["methods"]] == ["mine"]
    assert main(["compare", "--data", str(tiny_data), "--model", str(tmp_path / "missing"), "--out",
                 str(tmp_path / "run2")]) == 2
    assert "names no tokenizer directory" in capsys.readouterr().err
