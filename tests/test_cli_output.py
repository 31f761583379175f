"""What the CLI prints: --version, plain tables off a terminal, progress modes, one-line warnings, --overwrite."""

from __future__ import annotations

import io
import json
import re
import time
import warnings

import numpy as np
import pytest

from sidkit import __version__, progress
from sidkit.cli import main, show_warning
from sidkit.cli.app import CliConsole
from sidkit.progress import Bar, progress_mode, set_progress, track
from sidkit.tokenizers.factory import default_codebook_size

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def embeddings_file(tmp_path_factory):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(20, 8))[rng.integers(0, 20, 1500)] + 0.3 * rng.normal(size=(1500, 8))).astype(np.float32)
    path = tmp_path_factory.mktemp("emb") / "x.npy"
    np.save(path, x)
    return path


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sidkit {__version__}"


def test_tables_in_a_log_are_plain_markdown_at_full_width(monkeypatch):
    from rich.table import Table

    monkeypatch.delenv("COLUMNS", raising=False)
    buffer = io.StringIO()
    console = CliConsole(file=buffer)  # a StringIO is not a terminal, like a log file
    table = Table(title="test AUC")
    long_cells = [f"0.{i}{i}{i}{i} ± 0.00{i} (n=5)" for i in range(1, 10)]
    for index in range(len(long_cells)):
        table.add_column(f"feature set number {index}")
    table.add_row(*long_cells)
    console.print(table)
    text = buffer.getvalue()
    assert "\x1b[" not in text, "no colour or control codes in a log"
    assert "…" not in text and all(cell in text for cell in long_cells), "no cell is cut"
    lines = [line for line in text.splitlines() if line.startswith("|")]
    assert len(lines) == 3 and set(lines[1]) <= set("|-: "), "a markdown table: header, rule, row"
    assert max(len(line) for line in text.splitlines()) > 200  # wider than any terminal default


def test_diagnose_output_in_a_log_keeps_every_number(tmp_path, embeddings_file, capsys):
    assert main(["fit", "--levels", "2", "--codebook-size", "8", "--embeddings", str(embeddings_file),
                 "--out", str(tmp_path / "m")]) == 0
    assert main(["diagnose", "--model", str(tmp_path / "m"), "--embeddings", str(embeddings_file)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any("…" in line or line != line.rstrip() or not line.strip() for line in lines)
    header = next(line for line in lines if line.startswith("| level"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "level", "size", "active", "dead", "perplexity", "entropy ratio", "gini"]
    assert any(line.startswith("| mean cosine") for line in lines)


def test_fit_picks_the_codebook_size_from_the_catalog_size(tmp_path, embeddings_file):
    assert default_codebook_size(1500) == 64 and default_codebook_size(4096) == 256
    assert default_codebook_size(100) == 8 and default_codebook_size(10**7) == 256
    assert main(["fit", "--levels", "2", "--embeddings", str(embeddings_file), "--out", str(tmp_path / "m")]) == 0
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["codebook_sizes"] == [64, 64]


def test_commands_that_write_directories_refuse_a_non_empty_out_without_overwrite(tmp_path, embeddings_file,
                                                                                   capsys):
    out = tmp_path / "m"
    args = ["fit", "--levels", "2", "--codebook-size", "8", "--embeddings", str(embeddings_file), "--out", str(out)]
    assert main(args) == 0
    first = (out / "weights.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert (out / "weights.safetensors").stat().st_mtime_ns == first, "nothing was written"
    assert main([*args, "--overwrite", "--seed", "1"]) == 0
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 1
    (tmp_path / "file").write_text("x")
    assert main([*args[:-1], str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    for command in (["data", "fetch", "movielens-100k"], ["data", "import", "--items", "i.csv",
                                                           "--interactions", "e.csv"],
                    ["compare", "--data", str(tmp_path)], ["rank", "--data", str(tmp_path)]):
        assert main([*command, "--out", str(out)]) == 2, command
        assert "is not empty" in capsys.readouterr().err, command


def test_encode_names_rows_per_chunk_as_assign_does(tmp_path, embeddings_file, capsys):
    assert main(["fit", "--levels", "2", "--codebook-size", "8", "--embeddings", str(embeddings_file),
                 "--out", str(tmp_path / "m")]) == 0
    base = ["encode", "--model", str(tmp_path / "m"), "--embeddings", str(embeddings_file)]
    assert main([*base, "--out", str(tmp_path / "a.npy"), "--chunk-rows", "100"]) == 0
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "b.npy"), "--batch-size", "100"]) == 2
    assert "--chunk-rows 100" in capsys.readouterr().err


def test_progress_flags_exist_on_every_command_that_shows_progress(capsys):
    for command in (["embed"], ["fit"], ["encode"], ["diagnose"], ["compare"], ["rank"], ["assign"]):
        assert main([*command, "--help"]) == 0
        help_text = re.sub(r"\s+", " ", capsys.readouterr().out)
        assert "--progress" in help_text and "--no-progress" in help_text, command


def test_progress_modes(monkeypatch):
    monkeypatch.delenv("SIDKIT_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    assert progress_mode() == "log" and progress_mode(True) == "bar" and progress_mode(False) == "silent"
    set_progress(False)
    try:
        assert progress_mode() == "silent" and progress_mode(True) == "bar"
        set_progress(True)
        assert progress_mode() == "bar"
    finally:
        set_progress(None)
    monkeypatch.setenv("SIDKIT_PROGRESS", "0")
    assert progress_mode() == "silent"
    monkeypatch.setenv("SIDKIT_PROGRESS", "1")
    assert progress_mode() == "bar"


def test_long_work_off_a_terminal_prints_periodic_lines(monkeypatch, capsys):
    monkeypatch.delenv("SIDKIT_PROGRESS", raising=False)
    monkeypatch.setattr("sys.stderr.isatty", lambda: False)
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.05)
    with Bar("training", 10) as bar:
        for step in range(10):
            bar.advance()
            bar.note(f"loss {1 / (step + 1):.2f}")
            time.sleep(0.03)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) >= 3, lines
    assert re.fullmatch(r"sidkit: training \d+/10 \(\d+%\), 0:00:00 elapsed.*", lines[0])
    assert lines[-1].startswith("sidkit: training done after")
    # One slow step (a k-means level, a model load) is not silent either: a thread prints the lines.
    for _ in track(range(1), total=1, description="slow"):
        time.sleep(0.2)
    assert "sidkit: slow 0/1 (0%)" in capsys.readouterr().err
    # Short work prints nothing, and --no-progress silences long work.
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 5.0)
    list(track(range(3), description="quick"))
    monkeypatch.setattr(progress, "LOG_EVERY_SECONDS", 0.05)
    for _ in track(range(1), enabled=False):
        time.sleep(0.2)
    assert capsys.readouterr().err == ""


def test_warnings_are_one_line_without_source_and_only_on_rank_0(capsys, monkeypatch):
    show_warning(RuntimeWarning("RQVAE codebook collapse [level 0]"), RuntimeWarning, "/x/sidkit/rq_vae.py", 80)
    err = capsys.readouterr().err
    assert err.strip() == "warning: RQVAE codebook collapse [level 0]"
    import sidkit.cli.data as data_cli

    def noisy(*args, **kwargs):
        warnings.warn("something to know", UserWarning, stacklevel=1)

    monkeypatch.setattr(data_cli, "_print_info", noisy)
    assert main(["data", "info", "."]) == 0
    err = capsys.readouterr().err
    assert err.strip() == "warning: something to know" and "warnings.warn" not in err
    monkeypatch.setenv("RANK", "1")
    assert main(["data", "info", "."]) == 0
    assert capsys.readouterr().err == ""
