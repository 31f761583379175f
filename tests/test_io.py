"""Atomic outputs: files and whole directories appear complete or not at all; crashes lose nothing."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import sidkit.io as sio
from sidkit.errors import StorageError
from sidkit.io import atomic_dir, atomic_path, check_output_path, clean_stale, staging_dir, write_json, write_text


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_outputs_get_the_mode_of_a_plain_open_whatever_the_writer_did(tmp_path):
    with atomic_path(tmp_path / "a.bin") as tmp:
        tmp.unlink()  # a writer that replaces the file (as safetensors does) makes it 0600 again
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.close(fd)
    open(tmp_path / "plain", "w").close()
    assert mode(tmp_path / "a.bin") == mode(tmp_path / "plain")
    with atomic_dir(tmp_path / "d") as work:
        (work / "x").write_text("x")
    os.mkdir(tmp_path / "plain_dir")
    assert mode(tmp_path / "d") == mode(tmp_path / "plain_dir")


def test_saved_weights_have_the_mode_of_every_other_output(tmp_path):
    from sidkit.tokenizers.rq_kmeans import RQKMeans

    x = np.random.default_rng(0).normal(size=(200, 4)).astype(np.float32)
    RQKMeans(2, 4).fit(x).save(tmp_path / "m")
    assert mode(tmp_path / "m" / "weights.safetensors") == mode(tmp_path / "m" / "config.json")
    open(tmp_path / "plain", "w").close()
    assert mode(tmp_path / "m" / "weights.safetensors") == mode(tmp_path / "plain")


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    write_text(tmp_path / "f.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "f.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert (tmp_path / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]


def test_a_full_disk_while_writing_is_a_storage_error_naming_the_output(tmp_path):
    with pytest.raises(StorageError, match="disk is full") as caught, atomic_path(tmp_path / "f.txt"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(tmp_path / "f.txt") in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_removes_the_folders_it_made_and_keeps_those_that_were_there(tmp_path):
    (tmp_path / "kept").mkdir()
    for target in (tmp_path / "kept" / "new" / "deeper" / "f.txt", tmp_path / "new" / "f.txt"):
        with pytest.raises(StorageError, match="disk is full"), atomic_path(target):
            raise OSError(errno.ENOSPC, "No space left on device")
    for target in (tmp_path / "kept" / "new" / "run", tmp_path / "new" / "run"):
        for resumable in (False, True):
            with pytest.raises(StorageError, match="disk is full"), atomic_dir(target, resumable=resumable):
                raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["kept"]
    write_text(tmp_path / "new" / "f.txt", "made when the write succeeds")
    assert (tmp_path / "new" / "f.txt").is_file()


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = sio._HOST
    stale_file = tmp_path / f".c.parquet.{host}-{dead_pid}.abc123.tmp"
    stale_file.write_bytes(b"x" * 100)
    stale_dir = tmp_path / f".c.parquet.{host}-{dead_pid}.def456.tmp"
    stale_dir.mkdir()
    live = tmp_path / f".c.parquet.{host}-{os.getpid()}.ghi789.tmp"
    live.write_bytes(b"mine")
    other_host = tmp_path / f".c.parquet.otherhost-{dead_pid}.jkl012.tmp"
    other_host.write_bytes(b"theirs")
    write_text(tmp_path / "c.parquet", "new")  # any later write of the same target cleans up
    assert not stale_file.exists() and not stale_dir.exists()
    assert live.exists() and other_host.exists()


def test_a_folder_sweep_removes_dead_writers_temporaries_of_any_target(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    host = sio._HOST
    stale = [tmp_path / f".seed-0.{host}-{dead_pid}.abc123.tmp", tmp_path / f".seed-1.tmp-{dead_pid}",
             tmp_path / f".v1.2.json.{host}-{dead_pid}.x_9.tmp"]
    for path in stale:
        path.mkdir()
        (path / "weights.safetensors").write_bytes(b"half written")
    kept = [tmp_path / f".seed-2.{host}-{os.getpid()}.def456.tmp", tmp_path / f".seed-3.tmp-{os.getpid()}",
            tmp_path / f".seed-4.otherhost-{dead_pid}.ghi789.tmp", tmp_path / "seed-0", tmp_path / ".hidden"]
    for path in kept:
        path.mkdir()
    sio.clean_stale_in(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
    sio.clean_stale_in(tmp_path / "missing")  # nothing to sweep is not an error


def test_a_directory_is_replaced_as_a_whole(tmp_path):
    target = tmp_path / "run"
    with atomic_dir(target) as work:
        (work / "a.txt").write_text("old a")
        (work / "b.txt").write_text("old b")
    with pytest.raises(RuntimeError), atomic_dir(target) as work:
        (work / "a.txt").write_text("new a")
        raise RuntimeError("crash midway")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a.txt": "old a", "b.txt": "old b"}
    with atomic_dir(target) as work:
        (work / "a.txt").write_text("new a")
    assert {p.name: p.read_text() for p in target.iterdir()} == {"a.txt": "new a"}  # b.txt went with the old run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_the_swap_works_without_an_atomic_exchange_too(tmp_path, monkeypatch):
    monkeypatch.setattr(sio, "exchange_paths", lambda a, b: False)
    with atomic_dir(tmp_path / "run") as work:
        (work / "x").write_text("1")
    with atomic_dir(tmp_path / "run") as work:
        (work / "x").write_text("2")
    assert (tmp_path / "run" / "x").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_old_directory_set_aside_by_a_crash_comes_back(tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    aside = tmp_path / f".run.{sio._HOST}-{dead}.abcd.old"  # killed between the two renames of the fallback
    aside.mkdir()
    (aside / "x").write_text("old")
    clean_stale(tmp_path / "run")
    assert (tmp_path / "run" / "x").read_text() == "old" and not aside.exists()


def test_only_directories_of_the_right_kind_are_replaced(tmp_path):
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "notes.txt").write_text("mine")
    with pytest.raises(StorageError, match="not a model") as caught, atomic_dir(
            precious, replaceable=lambda d: (d / "config.json").is_file(), what="model"):
        raise AssertionError("never reached")
    assert caught.value.fix
    assert (precious / "notes.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    with atomic_dir(empty, replaceable=lambda d: False) as work:  # an empty directory may always go
        (work / "x").write_text("1")
    assert (empty / "x").is_file()


def test_keep_existing_changes_some_files_and_keeps_the_others(tmp_path):
    with atomic_dir(tmp_path / "d") as work:
        (work / "big.bin").write_bytes(b"data" * 1000)
        write_json(work / "manifest.json", {"v": 1})
    with atomic_dir(tmp_path / "d", keep_existing=True) as work:
        write_json(work / "manifest.json", {"v": 2})
    assert json.loads((tmp_path / "d" / "manifest.json").read_text()) == {"v": 2}
    assert (tmp_path / "d" / "big.bin").read_bytes() == b"data" * 1000


def test_a_resumable_directory_keeps_what_a_failed_run_finished(tmp_path):
    target = tmp_path / "rank"
    with pytest.raises(RuntimeError), atomic_dir(target, resumable=True) as work:
        (work / "runs.jsonl").write_text("seed 0\n")
        raise RuntimeError("killed after seed 0")
    assert not target.exists() and (staging_dir(target) / "runs.jsonl").read_text() == "seed 0\n"
    with atomic_dir(target, resumable=True) as work:
        assert (work / "runs.jsonl").read_text() == "seed 0\n"  # the next run gets it back
        with open(work / "runs.jsonl", "a") as handle:
            handle.write("seed 1\n")
    assert (target / "runs.jsonl").read_text() == "seed 0\nseed 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rank"]


def test_a_resumable_directory_that_finished_nothing_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "rank"
    with pytest.raises(RuntimeError), atomic_dir(target, resumable=True):
        raise RuntimeError("a bad option found late")
    assert list(tmp_path.iterdir()) == []

    real_fdopen = os.fdopen

    def full_disk(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)

        def write(_text):
            raise OSError(errno.ENOSPC, "No space left on device")

        handle.write = write
        return handle

    monkeypatch.setattr(sio.os, "fdopen", full_disk)
    with pytest.raises(StorageError, match="disk is full"), atomic_dir(target, resumable=True):
        raise AssertionError("never reached")
    assert list(tmp_path.iterdir()) == []  # not even the claim of its writer


def test_two_live_writers_of_one_resumable_directory_are_refused(tmp_path):
    target = tmp_path / "rank"
    with atomic_dir(target, resumable=True), pytest.raises(StorageError, match="another process"), \
            atomic_dir(target, resumable=True):
        raise AssertionError("never reached")


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StorageError, match="is a file"):
        check_output_path(tmp_path / "afile", directory=True)
    with pytest.raises(StorageError, match="is a file"):
        check_output_path(tmp_path / "afile" / "deeper" / "x.npy", directory=False)
    (tmp_path / "adir").mkdir()
    with pytest.raises(StorageError, match="is a directory"):
        check_output_path(tmp_path / "adir", directory=False)
    assert check_output_path(tmp_path / "new" / "deeper" / "x.npy", directory=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_folder_without_write_permission_is_refused(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="permission denied"):
            check_output_path(locked / "x", directory=True)
    finally:
        locked.chmod(0o755)


KILL_SWEEP = textwrap.dedent("""
    # One process: each run is a fork that SIGKILLs itself just before or just after its N-th rename,
    # then the directory is read the way load does (config and weights must describe one model).
    import json, os, signal, struct, sys
    from pathlib import Path
    import sidkit.io as sio
    from sidkit.cli import main

    out, old, new = Path(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])

    def run(args, kill_at=0, after=False):
        count_file = out.parent / "renames"
        pid = os.fork()
        if pid == 0:
            calls = [0]
            def counting(fn):
                def wrapped(*a, **k):
                    calls[0] += 1
                    if calls[0] == kill_at and not after:
                        os.kill(os.getpid(), signal.SIGKILL)
                    try:
                        return fn(*a, **k)
                    finally:
                        if calls[0] == kill_at and after:
                            os.kill(os.getpid(), signal.SIGKILL)
                return wrapped
            os.replace, os.rename = counting(os.replace), counting(os.rename)
            sio.exchange_paths = counting(sio.exchange_paths)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1), os.dup2(null, 2)
            code = main(args)
            count_file.write_text(str(calls[0]))
            os._exit(code)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    def state():
        config = json.loads((out / "config.json").read_text())
        with open(out / "weights.safetensors", "rb") as handle:
            header = json.loads(handle.read(struct.unpack("<Q", handle.read(8))[0]))
        shapes = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
        hidden = sorted(p.name for p in out.parent.iterdir() if p.name.startswith("."))
        return {"sizes": config["codebook_sizes"], "consistent": shapes == config["weights"], "hidden": hidden}

    assert run(old) == 0
    assert run(new) == 0
    renames = int((out.parent / "renames").read_text())
    print(json.dumps({"renames": renames}))
    for kill_at in range(1, renames + 1):
        for after in (False, True):
            assert run(old) == 0
            code = run(new, kill_at, after)
            print(json.dumps({"kill_at": kill_at, "after": after, "code": code, **state()}))
    assert run(old) == 0
    print(json.dumps({"final": True, **state()}))
""")


def test_kill_9_of_fit_over_an_existing_model_leaves_the_old_model_or_the_new_one(tmp_path):
    """fit -> save is killed just before and just after each of its renames; the model directory always
    holds one whole model (old or new), and the next run removes what the killed one left."""
    from sidkit.tokenizers.base import load_tokenizer

    x = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "sweep.py").write_text(KILL_SWEEP)
    fit = ["fit", "--embeddings", str(tmp_path / "x.npy"), "--out", str(tmp_path / "m"), "--overwrite"]
    old, new = [*fit, "--levels", "2", "--codebook-size", "8"], [*fit, "--levels", "3", "--codebook-size", "4"]
    done = subprocess.run([sys.executable, str(tmp_path / "sweep.py"), str(tmp_path / "m"), json.dumps(old),
                           json.dumps(new)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in done.stdout.splitlines()]
    kills = [r for r in records if "kill_at" in r]
    assert records[0]["renames"] >= 2 and len(kills) == 2 * records[0]["renames"]
    assert all(r["code"] == -9 and r["consistent"] for r in kills), kills
    assert {tuple(r["sizes"]) for r in kills} == {(8, 8), (4, 4, 4)}  # before the swap: old; after it: new
    assert records[-1]["consistent"] and records[-1]["hidden"] == []  # a later run cleans up
    assert load_tokenizer(tmp_path / "m").codebook_sizes == (8, 8)
