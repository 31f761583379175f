"""`sidkit rank` on tiny synthetic data: outputs, real boolean flags, readable errors."""

from __future__ import annotations

import json

import pytest

from sidkit.cli import main
from sidkit.data.synthetic import SyntheticConfig, write_synthetic
from sidkit.tokenizers.rq_kmeans import RQKMeans


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-rank")
    data = root / "synth"
    write_synthetic(SyntheticConfig(items=200, users=40, interactions=2000, dim=8, topics=(4, 2), seed=1), data)
    from sidkit.data.dataset import load_dataset

    RQKMeans(levels=2, codebook_size=4).fit(load_dataset(data).catalog.embeddings).save(root / "tok")
    return data, root / "tok", root


def test_rank_writes_outputs(tiny, capsys):
    data, tok, root = tiny
    out = root / "run"
    code = main(["rank", "--data", str(data), "--tokenizer", str(tok), "--features", "hash,sid-unigram,hash+sid-prefix",
                 "--seeds", "2", "--budget", "32", "--epochs", "1", "--batch-size", "512", "--embedding-dim", "8",
                 "--history", "4", "--no-report", "--out", str(out)])
    assert code == 0
    assert (out / "metrics.json").is_file() and (out / "summary.md").is_file()
    assert not (out / "report.html").exists()  # --no-report is a real flag
    metrics = json.loads((out / "metrics.json").read_text())
    assert [f["table_rows"] for f in metrics["features"]] == [32, 32, 32]  # hash+sid-prefix splits the budget
    assert all(f["size_matched"] for f in metrics["features"])
    printed = capsys.readouterr().out
    assert "metrics:" in printed and "2 seeds" in printed


def test_rank_budget_sweep_and_predict_from_a_saved_ranker(tiny, capsys):
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    data, tok, root = tiny
    out = root / "sweep"
    code = main(["rank", "--data", str(data), "--tokenizer", str(tok), "--features", "hash,sid-prefix",
                 "--seeds", "1", "--budget", "32,1/20", "--epochs", "1", "--batch-size", "512", "--embedding-dim", "8",
                 "--history", "4", "--no-report", "--out", str(out)])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert [f["name"] for f in metrics["features"]] == ["hash", "sid-prefix", "hash@10", "sid-prefix@10"]
    assert "1 seed" in capsys.readouterr().out
    # Score a few impressions with the saved sid-prefix ranker of seed 0.
    inter = pq.read_table(data / "interactions.parquet").slice(0, 25)
    impressions = pa.table({"user_id": inter.column("user_id"), "item_id": inter.column("item_id"),
                            "timestamp": inter.column("timestamp"), "note": pa.array(["x"] * 25)})
    pq.write_table(impressions, root / "new.parquet")
    code = main(["predict", "--ranker", str(out / "models" / "sid-prefix@10" / "seed-0"), "--impressions",
                 str(root / "new.parquet"), "--data", str(data), "--out", str(root / "scores.parquet")])
    assert code == 0
    scores = pq.read_table(root / "scores.parquet")
    assert scores.column_names == ["user_id", "item_id", "timestamp", "note", "p_click", "p_like"]
    p = scores.column("p_click").to_numpy()
    assert len(p) == 25 and np.all((p > 0) & (p < 1))
    bad = pa.table({"user_id": [1], "item_id": [10**9], "timestamp": [0]})
    pq.write_table(bad, root / "bad.parquet")
    code = main(["predict", "--ranker", str(out / "models" / "hash" / "seed-0"), "--impressions",
                 str(root / "bad.parquet"), "--data", str(data), "--out", str(root / "s2.parquet")])
    assert code == 2 and "not in the ranker's catalog" in capsys.readouterr().err


def test_rank_unknown_feature_is_one_readable_line(tiny, capsys):
    data, tok, root = tiny
    code = main(["rank", "--data", str(data), "--tokenizer", str(tok), "--features", "hash,sid-quadgram",
                 "--out", str(root / "bad")])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown representation 'sid-quadgram'" in err and "Traceback" not in err


def test_rank_help_shows_an_example(capsys):
    assert main(["rank", "--help"]) == 0
    assert "sidkit rank --data" in capsys.readouterr().out
