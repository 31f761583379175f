"""`sidkit retrieve` and run_retrieval end to end on a tiny dataset: outputs, tables, the study, errors."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from sidkit.cli import main
from sidkit.data.dataset import save_dataset
from sidkit.errors import ConfigError, DataError
from sidkit.retrieval.experiment import (
    RetrieveSettings,
    RunResult,
    pooled_clustered_new,
    pooled_paired_new,
    read_runs,
    run_retrieval,
)
from sidkit.retrieval.report import new_item_paired_rows, new_item_rows
from sidkit.retrieval.sasrec import SasrecConfig
from sidkit.retrieval.tiger import TigerConfig
from sidkit.tokenizers.rq_kmeans import RQKMeans

pytestmark = pytest.mark.usefixtures("one_thread")

TIGER = TigerConfig(width=16, heads=2, encoder_layers=1, decoder_layers=1,
                    hidden=32, user_buckets=8, epochs=2, patience=1, batch_size=32,
                    beam=10, valid_examples=20, eval_batch_size=32, precision="float32")
SASREC = SasrecConfig(width=16, heads=2, layers=1, hidden=32, epochs=2, patience=1, batch_size=32, precision="float32")
FAST = RetrieveSettings(seeds=2, history=4, cutoffs=(5, 10), tiger=TIGER, sasrec=SASREC, progress=False)
TABLE_KEYS = {"model", "tokenizer", "metric", "k", "slice", "mean", "low", "high", "half_width", "n"}


@pytest.fixture(scope="module")
def dataset_dir(walks, tmp_path_factory):
    root = tmp_path_factory.mktemp("walks")
    save_dataset(walks, root / "data")
    RQKMeans(levels=2, codebook_size=6, seed=0).fit(walks.catalog.embeddings).save(root / "rqk")
    return root


def test_run_writes_tables_runs_and_report(dataset_dir, tmp_path):
    settings = replace(FAST, random_sids=True, item_holdout=0.1)
    result = run_retrieval(dataset_dir / "data", tmp_path / "run", settings, tokenizer=dataset_dir / "rqk",
                           report=False)
    assert [(r.model, r.tokenizer) for r in result.runs[:4]] == [("tiger", "rqk"), ("tiger", "random"),
                                                                 ("sasrec", "-"), ("popularity", "-")]
    assert len(result.runs) == 8
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    rows = metrics["table"]
    assert rows and all(set(row) == TABLE_KEYS for row in rows)
    assert {(r["model"], r["tokenizer"]) for r in rows} == {("tiger", "rqk"), ("tiger", "random"), ("sasrec", "-"),
                                                           ("popularity", "-")}
    assert {r["slice"] for r in rows} == {"all", "new"} and {r["k"] for r in rows} == {5, 10}
    row = next(r for r in rows if (r["model"], r["metric"], r["k"], r["slice"]) == ("sasrec", "recall", 10, "all"))
    values = [run.metrics.get("recall", 10) for run in result.runs if run.model == "sasrec"]
    assert row["n"] == 2 and row["mean"] == pytest.approx(np.mean(values))
    # paired against sasrec: the mean of per-seed differences
    paired = next(p for p in metrics["paired_vs_sasrec"] if (p["model"], p["tokenizer"], p["metric"], p["k"],
                                                             p["slice"]) == ("popularity", "-", "ndcg", 5, "all"))
    pop = [run.metrics.get("ndcg", 5) for run in result.runs if run.model == "popularity"]
    sas = [run.metrics.get("ndcg", 5) for run in result.runs if run.model == "sasrec"]
    assert paired["mean"] == pytest.approx(np.mean(np.subtract(pop, sas)))
    assert len(read_runs(tmp_path / "run" / "runs.jsonl")) == 8
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "## Slice: new" in summary and "## Slice new, per run" in summary
    # per run: Recall@10 on the new slice as hits of examples
    headers, per_run = new_item_rows(result)
    assert headers[3:5] == ["new examples", "hits@10"] and len(per_run) == 8 + 4  # 2 seeds and a pooled row per arm
    assert [row[2] for row in per_run[:3]] == ["0", "1", "pooled"]
    pooled_runs = [r for r in result.runs if (r.model, r.tokenizer) == ("tiger", "rqk")]
    pooled_hits = sum(r.metrics.hits(10, "new")[0] for r in pooled_runs)
    assert per_run[2][3:5] == [str(sum(r.metrics.hits(10, "new")[1] for r in pooled_runs)), str(pooled_hits)]
    clustered_pool = pooled_clustered_new(pooled_runs, 10)
    assert clustered_pool is not None and clustered_pool.hits == pooled_hits
    assert clustered_pool.targets == sum(len({item for item, _ in r.new_targets}) for r in pooled_runs)
    assert pooled_clustered_new([replace(pooled_runs[0], new_targets=()), *pooled_runs[1:]], 10) is None
    hits, n = result.runs[0].metrics.hits(10, "new")
    assert per_run[0][:5] == ["tiger", "rqk", "0", str(n), str(hits)]
    assert hits == pytest.approx(result.runs[0].metrics.get("recall", 10, "new") * n)
    # each new-slice example's target and position are kept, so the hits can be read by target item
    run = result.runs[0]
    assert len(run.new_targets) == n and sum(0 <= position < 10 for _, position in run.new_targets) == hits
    assert RunResult.from_dict(json.loads(json.dumps(run.to_dict()))) == run
    distinct = len({item for item, _ in run.new_targets})
    column = headers.index("distinct targets")
    assert per_run[0][column] == (str(distinct) if distinct >= 2 else "-")
    spread = replace(run, new_targets=((4, 0), (4, 3), (4, -1), (9, -1), (2, 11)))
    clustered = spread.clustered_new(10)
    assert clustered is not None and (clustered.examples, clustered.hits, clustered.targets,
                                      clustered.targets_hit) == (5, 2, 3, 1)
    assert read_runs(tmp_path / "run" / "runs.jsonl")[0].new_targets == run.new_targets
    # paired on the new slice: the same examples of each seed, pooled like the per-arm reading
    assert "## Slice new, paired on the same examples" in summary
    random_runs = [r for r in result.runs if (r.model, r.tokenizer) == ("tiger", "random")]
    paired = pooled_paired_new(pooled_runs, random_runs, 10)
    random_pool = pooled_clustered_new(random_runs, 10)
    assert paired is not None and random_pool is not None
    assert (paired.hits_a, paired.hits_b) == (clustered_pool.hits, random_pool.hits)
    assert paired.clusters == clustered_pool.targets
    assert paired.difference == pytest.approx(clustered_pool.rate - random_pool.rate)
    pair_headers, pair_rows = new_item_paired_rows(result)
    assert [row[:3] for row in pair_rows] == [["tiger (rqk)", "tiger (random)", "0,1"],
                                              ["tiger (rqk)", "sasrec", "0,1"], ["tiger (random)", "sasrec", "0,1"],
                                              ["popularity", "sasrec", "0,1"]]
    assert pair_rows[0][pair_headers.index("hits@10 a / b")] == f"{paired.hits_a} / {paired.hits_b}"
    # only the seeds both arms ran are paired; hits count per arm on the same examples
    a = replace(pooled_runs[0], new_targets=((4, 0), (4, 3), (9, -1), (2, 11)))
    b = replace(random_runs[0], new_targets=((4, -1), (4, 5), (9, 2), (2, -1)))
    one = pooled_paired_new([a, replace(a, seed=7)], [b], 10)
    assert one is not None and (one.examples, one.clusters, one.hits_a, one.hits_b) == (4, 3, 2, 2)
    assert (one.clusters_a_ahead, one.clusters_b_ahead, one.difference) == (1, 1, 0.0)
    shifted = replace(random_runs[0], new_targets=random_runs[0].new_targets[1:])
    with pytest.raises(ConfigError, match="ranked different new examples"):
        pooled_paired_new(pooled_runs, [shifted, *random_runs[1:]], 10)


def test_same_seed_same_metrics(dataset_dir, tmp_path):
    settings = replace(FAST, seeds=1, models=("tiger", "sasrec"))
    first = run_retrieval(dataset_dir / "data", tmp_path / "a", settings, tokenizer=dataset_dir / "rqk", report=False)
    second = run_retrieval(dataset_dir / "data", tmp_path / "b", settings, tokenizer=dataset_dir / "rqk", report=False)
    assert [r.metrics for r in first.runs] == [r.metrics for r in second.runs]


def test_fitted_tokenizers_give_diagnostics_and_correlations(dataset_dir, tmp_path):
    settings = replace(FAST, seeds=2, models=("tiger",), tokenizers=("rq-kmeans", "random"), codebook_size=4)
    result = run_retrieval(dataset_dir / "data", tmp_path / "study", settings)
    assert [(r.tokenizer, r.seed) for r in result.runs] == [("rq-kmeans", 0), ("random", 0), ("rq-kmeans", 1),
                                                            ("random", 1)]
    assert all(r.diagnostics is not None and r.diagnostics["level0_keff"] is not None for r in result.runs)
    correlations = {c.diagnostic: c for c in result.correlations()}
    assert correlations["mse"].n == 4 and correlations["mse"].n_without_random == 2
    from scipy.stats import spearmanr

    xs = [r.diagnostics["mse"] for r in result.runs]
    ys = [r.metrics.get("recall", 10) for r in result.runs]
    if np.ptp(ys) > 0:
        assert correlations["mse"].rho == pytest.approx(spearmanr(xs, ys).statistic)
    assert (tmp_path / "study" / "tokenizers" / "seed-1" / "models" / "rq-kmeans" / "config.json").is_file()
    assert "Spearman" in (tmp_path / "study" / "summary.md").read_text()
    page = (tmp_path / "study" / "report.html").read_text()
    assert page.count("data:image/png;base64") == 2 and "Do the diagnostics predict retrieval?" in page


def test_cli_runs_and_bad_input_gets_one_line(dataset_dir, tmp_path, capsys, walks):
    data = str(dataset_dir / "data")
    assert main(["retrieve", "--data", data, "--out", str(tmp_path / "pop"), "--models", "popularity",
                 "--seeds", "1", "--no-report"]) == 0
    assert json.loads((tmp_path / "pop" / "metrics.json").read_text())["table"]
    capsys.readouterr()
    cases = [
        (["--models", "bert4rec"], "unknown model"),
        (["--tokenizer", str(dataset_dir / "rqk"), "--k", "5,10,50"], "larger than the tiger beam"),
        (["--models", "tiger"], "tiger needs Semantic IDs"),
        (["--split", "random"], "unknown split"),
    ]
    for extra, message in cases:
        assert main(["retrieve", "--data", data, "--out", str(tmp_path / "bad"), "--seeds", "1", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) <= 3


def test_data_errors(dataset_dir, tmp_path, walks):
    other = RQKMeans(levels=2, codebook_size=4).fit(np.random.default_rng(0).normal(size=(64, 5)).astype(np.float32))
    other.save(tmp_path / "other")
    with pytest.raises(DataError, match="5-dimensional"):
        run_retrieval(dataset_dir / "data", tmp_path / "x", FAST, tokenizer=tmp_path / "other")
    bare = replace(walks, catalog=walks.catalog.with_embeddings(walks.catalog.embeddings))
    save_dataset(bare, tmp_path / "bare")
    (tmp_path / "bare" / "embeddings.npy").unlink()
    with pytest.raises(DataError, match="no embeddings"):
        run_retrieval(tmp_path / "bare", tmp_path / "x", FAST, tokenizer=dataset_dir / "rqk")
    flat = replace(walks, interactions=replace(walks.interactions, timestamps=np.zeros(len(walks.interactions))))
    save_dataset(flat, tmp_path / "flat")
    with pytest.raises(DataError, match="same timestamp"):
        run_retrieval(tmp_path / "flat", tmp_path / "x", replace(FAST, models=("popularity",)))
    with pytest.raises(ConfigError, match="cutoffs must include 10"):
        run_retrieval(dataset_dir / "data", tmp_path / "x", replace(FAST, cutoffs=(5,)))


def test_a_run_cut_short_leaves_the_earlier_run_whole_and_keeps_its_finished_runs(dataset_dir, tmp_path,
                                                                                   monkeypatch):
    from sidkit.io import staging_dir
    from sidkit.retrieval import experiment as retrieval_experiment
    from sidkit.retrieval.experiment import experiment_from_runs

    settings = replace(FAST, seeds=1, models=("popularity",))
    run_retrieval(dataset_dir / "data", tmp_path / "run", settings, report=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()}
    real_run_model = retrieval_experiment.run_model
    calls = []

    def cut_short(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C in the second seed
        return real_run_model(*args, **kwargs)

    monkeypatch.setattr(retrieval_experiment, "run_model", cut_short)
    with pytest.raises(KeyboardInterrupt):
        run_retrieval(dataset_dir / "data", tmp_path / "run", replace(settings, seeds=2), report=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "run").iterdir()} == before  # untouched
    kept = experiment_from_runs(dataset_dir / "data", tmp_path / "run", settings)
    assert [(r.model, r.seed) for r in kept.runs] == [("popularity", 0)]  # from the staging directory
    from sidkit.retrieval.report import description
    unit_seconds = kept.runs[0].train_seconds + kept.runs[0].eval_seconds
    assert f"assembled from 1 finished runs, {unit_seconds:,.0f} s of training and test" in description(kept)
    assert "run took" not in description(kept)  # an assembled experiment has no wall time of its own
    monkeypatch.setattr(retrieval_experiment, "run_model", real_run_model)
    again = run_retrieval(dataset_dir / "data", tmp_path / "run", replace(settings, seeds=2), report=False)
    assert [(r.model, r.seed) for r in again.runs] == [("popularity", 0), ("popularity", 1)]
    assert f"run took {again.seconds:.0f} s" in description(again)
    assert len(read_runs(tmp_path / "run" / "runs.jsonl")) == 2  # the cut-short run's line was not kept
    assert not staging_dir(tmp_path / "run").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="not a retrieve run"):
        run_retrieval(dataset_dir / "data", tmp_path / "other", settings, report=False)
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"


@pytest.mark.parametrize(("change", "where"), [
    ({"history": 0}, "--history"), ({"history": -1}, "--history"), ({"item_holdout": 2.0}, "--item-holdout"),
    ({"item_holdout": float("nan")}, "--item-holdout"), ({"levels": 0}, "--levels"), ({"levels": 2**70}, "--levels"),
    ({"tokenizer_epochs": 0}, "--tokenizer-epochs"), ({"threads": 0}, "--threads"),
])
def test_bad_options_are_refused_before_the_data_is_read_or_anything_written(tmp_path, change, where):
    # The data directory does not exist: an option error must come first, and leave nothing behind.
    with pytest.raises(ConfigError) as caught:
        run_retrieval(tmp_path / "no-such-data", tmp_path / "run", replace(FAST, models=("popularity",), **change))
    assert caught.value.where == where and caught.value.fix
    assert list(tmp_path.iterdir()) == []
