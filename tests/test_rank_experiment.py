"""The ranking runner on tiny synthetic data: outputs and their keys, size-matched tables, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from sidkit.data.synthetic import SyntheticConfig, write_synthetic
from sidkit.errors import ConfigError, DataError
from sidkit.ranking.experiment import RankSettings, parse_features, run_ranking
from sidkit.ranking.types import SLICES
from sidkit.tokenizers.rq_kmeans import RQKMeans

BUDGET = 64
FAST = RankSettings(features=("hash", "sid-prefix", "sid-spm@24", "dense", "hash+sid-prefix"), seeds=2,
                    budget=BUDGET, epochs=1, batch_size=512, embedding_dim=8, history=5)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("rank")
    data = root / "synth"
    write_synthetic(SyntheticConfig(items=300, users=60, interactions=3000, dim=16, topics=(4, 4, 2), seed=0), data)
    from sidkit.data.dataset import load_dataset

    x = load_dataset(data).catalog.embeddings
    RQKMeans(levels=2, codebook_size=8).fit(x).save(root / "tok")
    return data, root / "tok", root


@pytest.fixture(scope="module")
def experiment(tiny):
    data, tok, root = tiny
    return run_ranking(data, tok, root / "out", FAST)


def test_writes_outputs_with_the_right_keys(experiment):
    metrics = json.loads(experiment.metrics_path.read_text())
    for key in ("settings", "features", "summary", "table", "paired_vs_baseline", "data", "runs", "tasks"):
        assert key in metrics
    assert metrics["tasks"] == ["click", "like"]
    assert len(metrics["runs"]) == len(FAST.features) * FAST.seeds
    keys = {(row["feature"], row["task"], row["slice"]) for row in metrics["table"]}
    assert keys == {(f, t, s) for f in FAST.features for t in ("click", "like") for s in SLICES}
    row = metrics["table"][0]
    assert set(row["auc"]) >= {"mean", "low", "high", "half_width", "n"}
    assert row["runs"] == FAST.seeds
    summary = experiment.summary_path.read_text()
    assert "click new" in summary and "hash+sid-prefix" in summary and "sid-spm@24 (own budget)" in summary
    html = experiment.report_path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html  # self-contained


def test_table_sizes_equal_budgets(experiment):
    info = {f.name: f for f in experiment.features}
    for name in ("hash", "sid-prefix"):
        assert info[name].table_rows == BUDGET and info[name].item_params == (BUDGET + 1) * FAST.embedding_dim
        assert info[name].size_matched
    assert info["hash+sid-prefix"].table_rows == 2 * BUDGET
    assert info["sid-spm@24"].table_rows == 24 and not info["sid-spm@24"].size_matched
    assert info["dense"].table_rows == 0 and info["dense"].budget is None
    # Size-matched tables give models of the same size.
    assert info["hash"].model_params == info["sid-prefix"].model_params


def test_paired_differences_against_hash(experiment):
    paired = experiment.paired()
    assert {p.feature for p in paired} == set(FAST.features) - {"hash"}
    diff = next(p for p in paired if p.feature == "sid-prefix" and p.task == "click" and p.slice == "all")
    ours = [r for r in experiment.runs("sid-prefix")]
    base = {r.seed: r for r in experiment.runs("hash")}
    expected = np.mean([r.metrics.get("click", "all").auc - base[r.seed].metrics.get("click", "all").auc
                        for r in ours])
    assert diff.difference.mean == pytest.approx(expected)


def test_unknown_feature_name():
    with pytest.raises(ConfigError, match="unknown representation 'sid-trigram'"):
        parse_features("hash,sid-trigram")
    with pytest.raises(ConfigError, match="budget"):
        parse_features("sid-spm@lots")


def test_unknown_feature_fails_before_any_work(tiny, tmp_path):
    data, tok, _ = tiny
    with pytest.raises(ConfigError, match="unknown representation"):
        run_ranking(data, tok, tmp_path / "out", RankSettings(features=("hash", "sid-pentagram")))
    assert not (tmp_path / "out").exists()


def test_tokenizer_of_another_dimension(tiny, tmp_path):
    data, _, _ = tiny
    RQKMeans(levels=2, codebook_size=4).fit(np.random.default_rng(0).normal(size=(100, 7))).save(tmp_path / "tok7")
    with pytest.raises(DataError, match=r"7-dimensional embeddings.*16 dimensions"):
        run_ranking(data, tmp_path / "tok7", tmp_path / "out", FAST)


def test_codes_of_another_item_set(tiny, tmp_path):
    data, tok, _ = tiny
    from sidkit.data.dataset import load_dataset
    from sidkit.tokenizers.base import load_tokenizer

    catalog = load_dataset(data).catalog
    ids = load_tokenizer(tok).encode(catalog.embeddings)
    pq.write_table(ids.to_table(item_ids=np.asarray(catalog.item_ids)), tmp_path / "codes.parquet")
    sub = type(ids)(ids.codes[:-10], ids.sizes)
    pq.write_table(sub.to_table(item_ids=np.asarray(catalog.item_ids)[:-10]), tmp_path / "fewer.parquet")
    with pytest.raises(DataError, match="another item set"):
        run_ranking(data, tmp_path / "fewer.parquet", tmp_path / "out", FAST)


def test_missing_embeddings(tiny, tmp_path):
    import shutil

    data, tok, _ = tiny
    bare = tmp_path / "bare"
    shutil.copytree(data, bare)
    (bare / "embeddings.npy").unlink()
    with pytest.raises(DataError, match="sidkit embed"):
        run_ranking(bare, tok, tmp_path / "out", FAST)


def test_sid_features_need_a_tokenizer(tiny, tmp_path):
    data, _, _ = tiny
    with pytest.raises(ConfigError, match="--tokenizer"):
        run_ranking(data, None, tmp_path / "out", FAST)


def test_runs_are_logged_as_they_finish_and_can_be_reassembled(experiment, tiny):
    from sidkit.ranking.experiment import PROGRESS_FILE, experiment_from_runs, markdown_summary

    data, tok, root = tiny
    assert len((root / "out" / PROGRESS_FILE).read_text().splitlines()) == len(FAST.features) * FAST.seeds
    again = experiment_from_runs(data, tok, root / "out", FAST)
    assert markdown_summary(again).split("|")[1:40] == markdown_summary(experiment).split("|")[1:40]
