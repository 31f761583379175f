"""Every command that computes takes `--threads`; bad counts are one-line errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import typer

from sidkit.cli import app, main

# Commands that only read or write files and compute nothing worth a thread.
NO_COMPUTE = {"lookup", "data fetch", "data import", "data info"}


def _commands(group: Any, prefix: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {}
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if hasattr(command, "commands"):  # a group (typer's click may be its own copy)
            found.update(_commands(command, f"{full} "))
        else:
            found[full] = command
    return found


def test_every_compute_command_has_threads() -> None:
    commands = _commands(typer.main.get_command(app))
    assert {"fit", "encode", "diagnose", "compare", "rank", "embed", "assign", "data synth"} <= set(commands)
    missing = [name for name, command in commands.items() if name not in NO_COMPUTE
               and not any("--threads" in getattr(p, "opts", ()) for p in command.params)]
    assert not missing, f"commands without --threads (add the shared option sidkit.cli.app.Threads): {missing}"


@pytest.mark.parametrize("value", ["0", "-1"])
def test_a_bad_thread_count_is_a_one_line_error(value: str, tmp_path, capsys) -> None:
    np.save(tmp_path / "x.npy", np.zeros((10, 4), dtype=np.float32))
    code = main(["fit", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m"), "--threads", value])
    assert code == 2
    err = capsys.readouterr().err
    assert "threads must be a positive integer" in err and "--threads" in err
    assert not (tmp_path / "m").exists()


def test_threads_option_sets_torch_threads(tmp_path) -> None:
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.normal(size=(300, 8)).astype(np.float32))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert main(["fit", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m"),
                     "--levels", "2", "--codebook-size", "8", "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
