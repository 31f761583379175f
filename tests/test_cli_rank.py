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
    assert [f["table_rows"] for f in metrics["features"]] == [32, 32, 64]
    assert "metrics:" in capsys.readouterr().out


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
