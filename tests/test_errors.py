"""The one place that turns expected failures into one line with a Fix: part (sidkit.errors + cli.main)."""

from __future__ import annotations

import errno
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import sidkit.cli.tokens as cli_tokens
from sidkit.cli import main
from sidkit.errors import (
    DataError,
    ResourceError,
    StorageError,
    explain,
    format_bytes,
    innermost_sidkit_error,
    os_errno,
)


def one_error_line(capsys) -> str:
    """The single stderr line of a failed command; fails unless it is 'error: ... Fix: ...'."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:") and "Fix:" in lines[0] and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "disk is full"), (errno.EDQUOT, "quota"), (errno.EROFS, "read-only file system"),
    (errno.EACCES, "permission denied"), (errno.EPERM, "permission denied"), (errno.EISDIR, "is a directory"),
    (errno.ENOTDIR, "is a file, not a directory"), (errno.EEXIST, "exists already"), (errno.ENOENT, "does not exist"),
    (errno.ENAMETOOLONG, "too long"), (errno.EMFILE, "too many open files"), (errno.EIO, "input/output error"),
])
def test_every_kind_of_os_error_is_named_with_its_path_and_a_fix(code, words):
    error = explain(OSError(code, os.strerror(code), "/some/where/out.parquet"))
    assert isinstance(error, StorageError) and isinstance(error, OSError)
    assert words in str(error) and "/some/where/out.parquet" in str(error) and error.fix


def test_errno_hidden_in_library_text_is_found():
    # pyarrow and safetensors keep the errno in their message only.
    assert os_errno(RuntimeError("IoError(Os { code: 28, kind: StorageFull })")) == errno.ENOSPC
    assert os_errno(OSError("Error writing bytes to file. Detail: [errno 28] No space left on device")) == 28
    assert os_errno(ValueError("Read-only file system")) == errno.EROFS
    assert os_errno(ValueError("something else")) is None


def test_memory_errors_say_the_size_asked_and_how_to_reduce_it():
    with pytest.raises(MemoryError) as caught:
        np.empty((2**50,), dtype=np.float64)  # 8 PiB: refused at once, nothing touched
    error = explain(caught.value)
    assert isinstance(error, ResourceError) and "8.0 PiB" in str(error) and "(1125899906842624,)" in str(error)
    assert "smaller" in error.fix  # type: ignore[operator]
    torch_style = RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4000000000 bytes.")
    assert "3.7 GiB" in str(explain(torch_style))
    assert format_bytes(1536) == "1.5 KiB" and format_bytes(10) == "10 B"


def test_bugs_are_not_disguised():
    assert explain(ZeroDivisionError("bug")) is None
    assert explain(KeyError("x")) is None


def test_sidkit_errors_survive_pickling_with_their_parts():
    error = DataError("bad rows", where="x.npy", fix="drop them")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is DataError and (again.problem, again.where, again.fix) == ("bad rows", "x.npy", "drop them")
    assert str(again) == str(error)


def test_the_innermost_sidkit_error_of_a_wrapper_is_found():
    inner = DataError("bad chunk", where="rows 0..9", fix="fix it")

    class WrappedTaskError(DataError):  # what Ray raises: a subclass of the cause, traceback in its text
        pass

    outer = WrappedTaskError("Traceback (most recent call last):\n  ...\n" * 40, fix="-")
    outer.cause = inner  # type: ignore[attr-defined]
    assert innermost_sidkit_error(outer) is inner
    try:
        try:
            raise inner
        except DataError as error:
            raise RuntimeError("pool failed") from error
    except RuntimeError as wrapper:
        assert innermost_sidkit_error(wrapper) is inner


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EISDIR, errno.ENOTDIR, errno.EEXIST])
def test_the_cli_reports_environment_failures_in_one_line(tmp_path, capsys, monkeypatch, code):
    def failing(*_args, **_kwargs):
        raise OSError(code, os.strerror(code), str(tmp_path / "x.npy"))

    monkeypatch.setattr(cli_tokens, "_embeddings_from", failing)
    assert main(["fit", "--levels", "1", "--codebook-size", "2", "--embeddings", "x.npy",
                 "--out", str(tmp_path / "m")]) == 2
    line = one_error_line(capsys)
    assert os.strerror(code).split()[0].lower() in line.lower() or "disk is full" in line or "exists" in line


def test_the_cli_reports_memory_and_interrupts_in_one_line(tmp_path, capsys, monkeypatch):
    def no_memory(*_args, **_kwargs):
        np.empty((2**50,), dtype=np.float64)

    monkeypatch.setattr(cli_tokens, "_embeddings_from", no_memory)
    assert main(["fit", "--levels", "1", "--codebook-size", "2", "--embeddings", "x.npy",
                 "--out", str(tmp_path / "m")]) == 2
    assert "not enough memory: asked for 8.0 PiB" in one_error_line(capsys)

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_tokens, "_embeddings_from", interrupted)
    assert main(["fit", "--levels", "1", "--codebook-size", "2", "--embeddings", "x.npy",
                 "--out", str(tmp_path / "m")]) == 130
    assert "interrupted" in one_error_line(capsys)
    assert not (tmp_path / "m").exists()


def test_a_bug_keeps_its_traceback(tmp_path, monkeypatch):
    def bug(*_args, **_kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(cli_tokens, "_embeddings_from", bug)
    with pytest.raises(ZeroDivisionError):
        main(["fit", "--levels", "1", "--codebook-size", "2", "--embeddings", "x.npy", "--out", str(tmp_path / "m")])


@pytest.mark.parametrize("args", [
    ["fit", "--frobnicate"],
    ["fit", "--out", "m", "--levels", "abc"],
    ["data", "fetch"],
    ["lookup"],
])
def test_usage_errors_are_one_line_with_a_fix(capsys, args):
    assert main(args) == 2
    line = one_error_line(capsys)
    assert "--help" in line


def test_a_group_without_a_command_shows_its_help(capsys):
    assert main(["data"]) == 2
    assert "synth" in capsys.readouterr().out
    assert main(["--help"]) == 0


@pytest.mark.parametrize("device", ["mps", "cuda:7", "gpu!", "xpu"])
def test_a_device_this_machine_lacks_is_refused_before_any_work(tmp_path, capsys, device):
    import torch

    if device.startswith("cuda") and torch.cuda.device_count() > 7:
        pytest.skip("this machine has that GPU")
    for args in (["fit", "--embeddings", str(tmp_path / "none.npy"), "--out", str(tmp_path / "m")],
                 ["encode", "--model", str(tmp_path / "none"), "--embeddings", "x.npy", "--out", "c.npy"],
                 ["compare", "--data", str(tmp_path), "--out", str(tmp_path / "c")],
                 ["rank", "--data", str(tmp_path), "--out", str(tmp_path / "r")]):
        assert main([*args, "--device", device]) == 2
        line = one_error_line(capsys)
        assert "--device" in line and device in line
    assert not (tmp_path / "m").exists()


def test_an_out_that_is_an_existing_file_is_refused_before_any_work(tmp_path, capsys):
    existing = tmp_path / "existing"
    existing.write_text("precious")
    for args in (["fit", "--embeddings", "x.npy"], ["compare", "--data", str(tmp_path)],
                 ["rank", "--data", str(tmp_path)], ["data", "synth"],
                 ["data", "fetch", "movielens-100k"]):
        assert main([*args, "--out", str(existing)]) == 2
        assert "is a file" in one_error_line(capsys)
        assert main([*args, "--out", str(existing / "below")]) == 2
        assert "is a file" in one_error_line(capsys)
    assert existing.read_text() == "precious"


def test_ctrl_c_during_encode_is_one_line_and_leaves_no_output(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600_000, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert main(["fit", "--levels", "2", "--codebook-size", "4", "--embeddings", str(tmp_path / "x.npy"),
                 "--out", str(tmp_path / "m")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "sidkit.cli", "encode", "--model", str(tmp_path / "m"),
                                "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "c.parquet"),
                                "--chunk-rows", "5000"], stderr=subprocess.PIPE, text=True, env=env,
                               # a shell's background job ignores SIGINT, and children inherit that
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0:
        pytest.skip("the encode finished before the interrupt arrived")
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == 130 and len(lines) == 1 and "interrupted" in lines[0] and "Fix:" in lines[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "x.npy"]


def test_every_sidkit_error_has_a_fix_part():
    from sidkit.errors import ConfigError, NotFittedError

    for cls in (DataError, ConfigError, NotFittedError, StorageError, ResourceError):
        assert "Fix: " in str(cls("something is off", where="x"))
    assert str(DataError("bad", fix="do this")).endswith("Fix: do this")
