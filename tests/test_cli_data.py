"""The data commands of the CLI, run in-process through ``sidkit.cli.main``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from sidkit.cli import main
from sidkit.data.dataset import load_dataset

COMMANDS = [["data", "fetch"], ["data", "synth"], ["data", "import"], ["data", "info"], ["embed"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_has_an_example(command, capsys):
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "Example" in out and "sidkit " in out


def test_fetch_then_info(tmp_path, capsys):
    out = tmp_path / "ml"
    assert main(["data", "fetch", "movielens-100k", "--out", str(out)]) == 0
    assert "1,682" in capsys.readouterr().out
    assert len(load_dataset(out).catalog) == 1682
    assert main(["data", "info", str(out)]) == 0
    assert "100,000" in capsys.readouterr().out


def test_import_validates_and_writes(tmp_path, capsys):
    pacsv.write_csv(pa.table({"item_id": [1, 2, 3], "text": ["a", "b", "c"]}), tmp_path / "items.csv")
    pacsv.write_csv(pa.table({"user_id": [1, 1], "item_id": [1, 3], "timestamp": [5, 6], "click": [1, 0]}),
                    tmp_path / "events.csv")
    np.save(tmp_path / "emb.npy", np.ones((3, 4), np.float32))
    code = main(["data", "import", "--items", str(tmp_path / "items.csv"), "--interactions",
                 str(tmp_path / "events.csv"), "--embeddings", str(tmp_path / "emb.npy"),
                 "--out", str(tmp_path / "out")])
    assert code == 0
    loaded = load_dataset(tmp_path / "out")
    assert loaded.catalog.dim == 4 and loaded.interactions.labels["click"].tolist() == [1, 0]


def test_errors_are_one_line_with_a_fix(tmp_path, capsys):
    assert main(["data", "info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Fix:" in err and "Traceback" not in err
    assert main(["data", "fetch", "movielens-10m", "--out", str(tmp_path)]) == 2
    assert "unknown dataset" in capsys.readouterr().err


def test_usage_error_exit_code(capsys):
    assert main(["data", "fetch"]) == 2


def test_synth_is_deterministic_and_refuses_to_clobber(tmp_path, capsys):
    args = ["data", "synth", "--items", "3000", "--users", "200", "--interactions", "5000", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    np.testing.assert_array_equal(a.catalog.embeddings, b.catalog.embeddings)
    np.testing.assert_array_equal(a.interactions.labels["click"], b.interactions.labels["click"])
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "a")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "a"), "--overwrite"]) == 0
