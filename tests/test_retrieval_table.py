"""benchmarks/retrieval_table.py: which finished units stand when the epoch cap is raised."""

from __future__ import annotations

from types import ModuleType

from conftest import load_benchmark


def load_script() -> ModuleType:
    return load_benchmark("retrieval_table")


def test_a_unit_that_ran_to_a_lower_cap_is_run_again_and_one_that_stopped_early_is_kept() -> None:
    current = load_script().unit_is_current
    # Written before the cap was recorded: the cap then was 30.
    assert current({"model": "tiger", "epochs_run": 24}, 60)  # stopped early: a higher cap changes nothing
    assert not current({"model": "tiger", "epochs_run": 30}, 60)  # cut by the cap: not converged
    assert current({"model": "tiger", "epochs_run": 30}, 30)  # the same cap: stands
    assert current({"model": "tiger", "epochs_run": 60, "epoch_cap": 60}, 60)
    assert not current({"model": "tiger", "epochs_run": 60, "epoch_cap": 60}, 80)
    assert current({"model": "tiger", "epochs_run": 41, "epoch_cap": 60}, 80)
    assert current({"model": "sasrec", "epochs_run": 35}, 50)  # sasrec's cap of then was 50
    assert not current({"model": "sasrec", "epochs_run": 50}, 80)
    assert current({"model": "popularity", "epochs_run": 0}, 60)  # trains nothing


def test_the_script_s_default_cap_is_tiger_s() -> None:
    from sidkit.retrieval.tiger import TigerConfig

    script = load_script()
    assert script.TigerConfig().epochs == TigerConfig().epochs == 60


def test_the_cli_cap_on_tiger_epochs_is_the_configs() -> None:
    import inspect

    from sidkit.cli.retrieve import retrieve
    from sidkit.retrieval.tiger import TigerConfig

    assert inspect.signature(retrieve).parameters["tiger_epochs"].default == TigerConfig().epochs


def test_tables_of_chosen_seeds_are_written_apart_from_the_whole_table(tmp_path) -> None:
    import json
    import shutil
    from pathlib import Path

    import numpy as np

    from sidkit.retrieval.experiment import RetrieveSettings

    units = Path(__file__).parents[1] / "benchmarks/results/retrieval/ml1m-loo-cap60/runs/leave-one-out"
    shutil.copytree(units, tmp_path / "runs" / "leave-one-out")
    script = load_script()
    settings = RetrieveSettings(models=("tiger",), progress=False)
    script.write_tables(Path("data/ml-1m"), tmp_path, settings, "leave-one-out")
    script.write_tables(Path("data/ml-1m"), tmp_path, settings, "leave-one-out", [0, 2])

    def recall10(path: Path, tokenizer: str) -> dict:
        rows = json.loads(path.read_text())["table"]
        return next(r for r in rows if r["tokenizer"] == tokenizer and r["metric"] == "recall" and r["k"] == 10
                    and r["slice"] == "all")

    def unit(seed: int) -> float:
        record = json.loads((units / f"tiger-random-seed{seed}.json").read_text())
        return next(m["value"] for m in record["metrics"] if m["metric"] == "recall" and m["k"] == 10
                    and m["slice"] == "all")

    whole = recall10(tmp_path / "leave-one-out" / "metrics.json", "random")
    chosen = recall10(tmp_path / "leave-one-out" / "seeds-0-2" / "metrics.json", "random")
    seeds = sorted(int(p.stem.rsplit("seed", 1)[1]) for p in units.glob("tiger-random-seed*.json"))
    assert len(seeds) >= 3 and whole["n"] == len(seeds) and chosen["n"] == 2
    np.testing.assert_allclose(whole["mean"], np.mean([unit(s) for s in seeds]))
    np.testing.assert_allclose(chosen["mean"], np.mean([unit(s) for s in (0, 2)]))
    assert "2 seeds" in (tmp_path / "leave-one-out" / "seeds-0-2" / "summary.md").read_text()


def test_tables_only_refuses_units_run_under_another_hold_out(tmp_path, monkeypatch) -> None:
    import shutil
    import sys
    from pathlib import Path

    import pytest

    units = Path(__file__).parents[1] / "benchmarks/results/retrieval/ml1m-cold-clustered/runs/leave-one-out"
    shutil.copytree(units, tmp_path / "runs" / "leave-one-out")
    script = load_script()
    argv = ["retrieval_table.py", "--data", "data/ml-1m", "--out", str(tmp_path), "--splits", "leave-one-out",
            "--tables-only"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit, match=r"was run with --item-holdout 0\.1, not 0\.0"):
        script.main()  # the table would print hold-out 0 over cold-start units
    assert not (tmp_path / "leave-one-out").exists()
    monkeypatch.setattr(sys, "argv", [*argv, "--item-holdout", "0.1", "--new-item-share", "0.1"])
    script.main()
    assert "item hold-out 0.1" in (tmp_path / "leave-one-out" / "summary.md").read_text(encoding="utf-8")
