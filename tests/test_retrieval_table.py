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
