"""benchmarks/compare_rankers.py: the table reads each model folder's own feature set, paired by seed."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

from conftest import load_benchmark


def load_script() -> ModuleType:
    return load_benchmark("compare_rankers")


def record(feature: str, seed: int, auc: float) -> str:
    return json.dumps({"feature": feature, "seed": seed, "metrics": [{"task": "click", "slice": "all", "auc": auc}]})


def test_a_folder_resumed_from_a_wider_run_keeps_only_its_feature_set(tmp_path: Path) -> None:
    # A folder whose runs.jsonl also holds another feature set (copied from a run over two) must not let
    # the later line of the same seed replace the compared one.
    script = load_script()
    folder = tmp_path / "mmoe"
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({"features": ["sid-prefix"]}))
    (folder / "runs.jsonl").write_text("\n".join([record("sid-prefix", 0, 0.8), record("hash", 0, 0.7),
                                                   record("hash", 1, 0.6), record("sid-prefix", 1, 0.9)]) + "\n")
    runs = script._runs(folder)
    assert sorted(runs) == [0, 1]
    assert [script._auc(runs[seed], "click", "all") for seed in (0, 1)] == [0.8, 0.9]


def test_a_folder_without_settings_reads_every_line(tmp_path: Path) -> None:
    script = load_script()
    (tmp_path / "runs.jsonl").write_text(record("sid-prefix", 0, 0.8) + "\n" + record("sid-prefix", 2, 0.7) + "\n")
    assert sorted(script._runs(tmp_path)) == [0, 2]
