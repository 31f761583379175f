"""The ranking runner on tiny synthetic data: outputs and their keys, size-matched tables, bad inputs."""

from __future__ import annotations

import contextlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from sidkit.data.synthetic import SyntheticConfig, write_synthetic
from sidkit.errors import ConfigError, DataError
from sidkit.ranking.experiment import RankSettings, parse_budget, parse_features, plan_entries, run_ranking
from sidkit.ranking.types import SLICES
from sidkit.tokenizers.rq_kmeans import RQKMeans

BUDGET = 64


def _no_check():
    return contextlib.nullcontext()
FAST = RankSettings(features=("hash", "sid-prefix", "sid-spm@24", "dense", "hash+sid-prefix"), seeds=2,
                    budget=BUDGET, sweep=("1/10",), sweep_features=("hash", "sid-prefix"), epochs=2, patience=1,
                    batch_size=512, embedding_dim=8, history=5)
NAMES = ("hash", "sid-prefix", "sid-spm@24", "dense", "hash+sid-prefix", "hash@30", "sid-prefix@30")
TASKS = ("click", "like", "like|click")


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
    assert metrics["tasks"] == ["click", "like"] and metrics["evaluated"] == list(TASKS)
    assert len(metrics["runs"]) == len(NAMES) * FAST.seeds
    keys = {(row["feature"], row["task"], row["slice"]) for row in metrics["table"]}
    assert keys == {(f, t, s) for f in NAMES for t in TASKS for s in SLICES}
    row = metrics["table"][0]
    assert set(row["auc"]) >= {"mean", "low", "high", "half_width", "n"} and set(row["gauc"]) >= {"mean", "n"}
    assert row["runs"] == FAST.seeds
    assert {"table_rows", "rows_used"} <= set(metrics["features"][0])
    summary = experiment.summary_path.read_text()
    assert "AUC new-matched" in summary and "## like|click" in summary and "GAUC all" in summary
    assert "sid-spm@24 (not size-matched)" in summary and "dense (no table)" in summary
    assert "n = 2 seeds" in summary and "Warning: with 2 seeds" in summary
    html = experiment.report_path.read_text()
    assert html.startswith("<!DOCTYPE html>") and "data:image/png;base64," in html
    assert "http://" not in html and "https://" not in html  # self-contained


def test_table_sizes_equal_budgets(experiment):
    info = {f.name: f for f in experiment.features}
    for name in ("hash", "sid-prefix", "hash+sid-prefix"):
        # A combination splits the budget, so it is size-matched with the single features.
        assert info[name].table_rows == BUDGET and info[name].size_matched, name
    assert info["hash"].item_params == (BUDGET + 1) * FAST.embedding_dim
    assert info["sid-spm@24"].table_rows == 24 and not info["sid-spm@24"].size_matched
    assert info["dense"].table_rows == 0 and info["dense"].budget is None and not info["dense"].size_matched
    # The sweep: 1/10 of the 300 items, paired with hash at the same budget.
    assert info["hash@30"].table_rows == 30 and info["sid-prefix@30"].table_rows == 30
    assert info["sid-prefix@30"].baseline == "hash@30" and info["sid-prefix@30"].size_matched
    assert info["hash@30"].baseline is None and info["sid-prefix"].baseline == "hash"
    # Rows used: 300 hashed ids fill at most 30 rows; at 64 rows they collide too (300 items).
    assert info["hash@30"].rows_used <= 30 and info["hash"].rows_used <= BUDGET
    assert info["hash"].model_params == info["sid-prefix"].model_params


def test_plan_entries_and_budget_shares():
    assert parse_budget("1/4", 1682) == 420 and parse_budget("512", 10) == 512
    with pytest.raises(ConfigError, match="budget"):
        parse_budget("a/4", 10)
    entries = plan_entries(RankSettings(features=("hash", "sid-prefix", "dense"), budget=4096, sweep=("1/4",)), 1682)
    assert [(e.name, e.budget, e.baseline) for e in entries] == [
        ("hash", 4096, None), ("sid-prefix", 4096, "hash"), ("dense", None, "hash"),
        ("hash@420", 420, None), ("sid-prefix@420", 420, "hash@420")]


def test_paired_differences_against_the_baseline_of_the_same_budget(experiment):
    paired = experiment.paired()
    assert {p.feature for p in paired} == set(NAMES) - {"hash", "hash@30"}
    for feature, baseline in (("sid-prefix", "hash"), ("sid-prefix@30", "hash@30")):
        diff = next(p for p in paired if p.feature == feature and p.task == "click" and p.slice == "all")
        assert diff.baseline == baseline
        base = {r.seed: r for r in experiment.runs(baseline)}
        expected = np.mean([r.metrics.get("click", "all").auc - base[r.seed].metrics.get("click", "all").auc
                            for r in experiment.runs(feature)])
        assert diff.difference.mean == pytest.approx(expected)


def test_saved_ranker_reproduces_the_test_metrics_and_like_given_click(experiment, tiny):
    from sidkit.data.dataset import load_dataset
    from sidkit.ranking.data import build_ranking_data
    from sidkit.ranking.experiment import seed_data_settings
    from sidkit.ranking.metrics import grouped_auc, roc_auc
    from sidkit.ranking.saved import load_ranker, score_impressions
    from sidkit.ranking.training import predict

    data_dir, _, root = tiny
    run = next(r for r in experiment.runs("sid-prefix") if r.seed == 1)
    saved = load_ranker(root / "out" / "models" / "sid-prefix" / "seed-1")
    assert saved.tasks == ("click", "like")
    dataset = load_dataset(data_dir)
    with _no_check():
        data = build_ranking_data(dataset, seed=1, **seed_data_settings(FAST))
    test = data.test
    p = predict(saved.model, test)
    main, clicked = test.main, test.labels["click"] == 1
    assert roc_auc(test.labels["click"][main], p["click"][main]) == pytest.approx(run.metrics.get("click", "all").auc)
    # like|click: the like head, on the clicked impressions only.
    mask = main & clicked
    expected_like = run.metrics.get("like|click", "all").auc
    assert roc_auc(test.labels["like"][mask], p["like"][mask]) == pytest.approx(expected_like)
    matched = test.slices["new-matched"]
    expected, _ = grouped_auc(test.labels["click"][matched], p["click"][matched], test.group[matched], weight="pairs")
    assert expected == pytest.approx(run.metrics.get("click", "new-matched").auc)
    # Scoring raw (user id, item id, time) rows gives the same probabilities as the split's tensors.
    user_ids = np.unique(dataset.interactions.user_ids)[test.user]
    item_ids = dataset.catalog.item_ids[test.item]
    scores = score_impressions(saved, user_ids, item_ids, test.time, engagements=dataset.interactions,
                               users=dataset.users)
    assert np.allclose(scores["click"], p["click"], atol=1e-6)


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
    from sidkit.ranking.experiment import PROGRESS_FILE, experiment_from_runs
    from sidkit.ranking.summary import markdown_summary

    data, tok, root = tiny
    assert len((root / "out" / PROGRESS_FILE).read_text().splitlines()) == len(NAMES) * FAST.seeds
    again = experiment_from_runs(data, tok, root / "out", FAST)
    assert markdown_summary(again).split("|")[1:40] == markdown_summary(experiment).split("|")[1:40]


def test_each_selection_is_tested_with_the_weights_of_its_own_epoch(tiny, tmp_path):
    """Test metrics come from weights kept at each selection's best epoch; the reference tests the model
    after every epoch of the same training instead."""
    from sidkit.data.dataset import load_dataset
    from sidkit.features.representations import build_representation
    from sidkit.ranking.data import build_ranking_data, training_item_counts
    from sidkit.ranking.experiment import load_sids, seed_data_settings
    from sidkit.ranking.metrics import evaluate
    from sidkit.ranking.models import ModelConfig, build_model
    from sidkit.ranking.training import TrainConfig, predict, train_model

    data_dir, tok, _ = tiny
    settings = RankSettings(features=("sid-prefix",), seeds=1, budget=BUDGET, epochs=4, patience=4, batch_size=512,
                            embedding_dim=8, history=5, save_models=False)
    run = run_ranking(data_dir, tok, tmp_path / "run", settings).runs("sid-prefix")[0]
    dataset = load_dataset(data_dir)
    with _no_check():
        data = build_ranking_data(dataset, seed=0, **seed_data_settings(settings))
    sids = load_sids(tok, np.ascontiguousarray(dataset.catalog.embeddings, dtype=np.float32), dataset.catalog.item_ids)
    rep = build_representation("sid-prefix", item_ids=dataset.catalog.item_ids, sids=sids,
                               embeddings=dataset.catalog.embeddings, budget=BUDGET,
                               train_items=training_item_counts(data), seed=0)
    model = build_model("mmoe", rep, data.num_user_embeddings, data.tasks, ModelConfig(embedding_dim=8, seed=0),
                        num_user_fields=int(data.train.user_features.shape[1]))
    every = {}
    train_model(model, data, TrainConfig(epochs=4, patience=4, batch_size=512, seed=0, progress=False),
                on_epoch=lambda r: every.__setitem__(r.epoch, evaluate(data.test, predict(model, data.test),
                                                                       data.conditional)))
    assert set(run.by_selection) == {"all", "all+new"}
    for epoch, metrics in run.by_selection.values():
        assert metrics == every[epoch]
    assert run.metrics == every[run.best_epoch]


def test_rerunning_into_the_same_out_resumes_and_other_settings_are_refused(tiny, tmp_path):
    data, tok, _ = tiny
    settings = RankSettings(features=("hash", "sid-prefix"), seeds=1, budget=32, epochs=1, batch_size=512,
                            embedding_dim=8, history=3, save_models=False)
    out = tmp_path / "run"
    first = run_ranking(data, tok, out, settings)
    lines = (out / "runs.jsonl").read_text().splitlines()
    # A crash after the first run leaves the staging directory, not `out`: the same settings resume
    # from it, keep the finished run as it was, and swap the directory in whole.
    import shutil

    from sidkit.io import staging_dir

    stage = staging_dir(out)
    stage.mkdir()
    shutil.copy2(out / "settings.json", stage / "settings.json")
    (stage / "runs.jsonl").write_text(lines[0] + "\n" + lines[1][:20])
    shutil.rmtree(out)
    again = run_ranking(data, tok, out, replace(settings, jobs=1))
    assert not stage.exists() and (out / "metrics.json").is_file()
    kept = json.loads(lines[0])
    assert json.loads((out / "runs.jsonl").read_text().splitlines()[0])["train_seconds"] == kept["train_seconds"]
    assert again.runs("hash")[0].metrics == first.runs("hash")[0].metrics  # same seed, same result
    # Adding a feature set (or a sweep budget) keeps every finished run: no run depends on the others.
    grown = run_ranking(data, tok, out, replace(settings, features=("hash", "sid-prefix", "sid-unigram")))
    assert grown.runs("hash")[0].train_seconds == again.runs("hash")[0].train_seconds
    assert [f.name for f in grown.features] == ["hash", "sid-prefix", "sid-unigram"]
    with pytest.raises(ConfigError, match=r"other settings.*epochs"):
        run_ranking(data, tok, out, replace(settings, epochs=2))
    assert (out / "runs.jsonl").is_file()  # refused: nothing was deleted
    replaced = run_ranking(data, tok, out, replace(settings, epochs=2), overwrite=True)
    assert replaced.settings.epochs == 2 and len((out / "runs.jsonl").read_text().splitlines()) == 2


def test_a_resumed_run_drops_the_ranker_folders_a_killed_run_was_writing(tiny, tmp_path):
    import subprocess
    import sys

    from sidkit.io import _HOST, staging_dir

    data, tok, _ = tiny
    settings = RankSettings(features=("hash",), seeds=2, budget=32, epochs=1, batch_size=512, embedding_dim=8,
                            history=3, jobs=1)
    out = tmp_path / "run"
    run_ranking(data, tok, out, settings)
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    # A crash while saving seed 1's ranker: the staging directory holds seed 0's run and two half-written
    # ranker folders (this version's temporaries and those of older versions).
    stage = staging_dir(out)
    out.rename(stage)
    lines = (stage / "runs.jsonl").read_text().splitlines()
    (stage / "runs.jsonl").write_text(lines[0] + "\n")
    models = stage / "models" / "hash"
    (models / "seed-1").rename(models / f".seed-1.{_HOST}-{dead}.abc123.tmp")
    (models / f".seed-1.tmp-{dead}").mkdir()
    resumed = run_ranking(data, tok, out, settings)
    assert sorted(p.name for p in (out / "models" / "hash").iterdir()) == ["seed-0", "seed-1"]
    assert not stage.exists() and len(resumed.runs("hash")) == 2


def test_one_seed_says_seed_draws_no_interval_and_warns(tiny, tmp_path):
    data, tok, _ = tiny
    settings = RankSettings(features=("hash",), seeds=1, budget=32, epochs=1, patience=1, batch_size=512,
                            embedding_dim=8, history=3, save_models=False, importance_repeats=1)
    result = run_ranking(data, tok, tmp_path / "one", settings)
    summary = result.summary_path.read_text()
    importance = result.runs("hash")[0].importance
    assert importance is not None and importance["fields"][0] == "user id" and "like|click" in importance["tasks"]
    assert "## Permutation importance: hash" in summary
    html = result.report_path.read_text()
    assert "1 seed: means only, no interval" in html and "1 seeds" not in html
    assert "1 seed;" in summary and "1 seeds" not in summary and "±" not in summary.split("## Convergence")[0]
    assert any("epoch limit" in line for line in result.warnings)  # 1 epoch cannot show the optimum
    assert any("1 seed" in line for line in result.warnings)


def test_a_model_below_chance_is_flagged():
    from sidkit.ranking.experiment import FeatureInfo, RankingExperiment, RunResult, SeedResult, _warnings
    from sidkit.ranking.metrics import RankingMetrics, SliceMetrics

    info = FeatureInfo("hash", "hash", 8, 8, 1, 72, 100, True)
    runs = [RunResult("hash", seed, RankingMetrics((SliceMetrics("click", "all", 10, 5, 0.41, 0.7),)), 3, 5, 1.0,
                      info, True) for seed in range(3)]
    experiment = RankingExperiment(Path("d"), "", Path("o"), RankSettings(), 10, 4, (), tuple(
        SeedResult(r.seed, {}, (r,)) for r in runs), (info,), 1.0, ("click",), ("click",))
    assert any("below chance" in line for line in _warnings(experiment))
