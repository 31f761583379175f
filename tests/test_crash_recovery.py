"""kill -9 of compare, rank, retrieve and encode over an earlier output: the output is the old one or the
new one, whole, never a mix; what the killed run left beside it is removed by the next run.

One driver process imports sidkit once; every run is a fork of it that SIGKILLs itself at a chosen
moment: at its first file rename (mid-run), or just before or just after the step that puts the new
output in place (the directory exchange, or the rename of a single file).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sidkit.data.synthetic import SyntheticConfig, write_synthetic

DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    import sidkit.io as sio
    import sidkit.compare, sidkit.ranking.experiment, sidkit.retrieval.experiment, sidkit.stream.writers
    from sidkit.cli import main

    def run(args, kill):
        pid = os.fork()
        if pid == 0:
            signal.alarm(300)  # a run that hangs ends (and fails the test) instead of blocking it
            renames = [0]
            def die():
                os.kill(os.getpid(), signal.SIGKILL)
            def rename(fn):
                def wrapped(*a, **k):
                    renames[0] += 1
                    if kill == "first-rename" and renames[0] == 1:
                        die()
                    return fn(*a, **k)
                return wrapped
            def swap(fn, is_final):
                def wrapped(*a, **k):
                    final = is_final(*a)
                    if final and kill == "before-swap":
                        die()
                    result = fn(*a, **k)
                    if final and kill == "after-swap":
                        die()
                    return result
                return wrapped
            target = Path(args[args.index("--out") + 1]).resolve()
            # The step that puts the output in place: the exchange of the run directory with its
            # temporary one, or (a single file) the rename onto the output path.
            sio.exchange_paths = swap(sio.exchange_paths, lambda a, b: Path(b).resolve() == target)
            os.replace = swap(rename(os.replace), lambda a, b: Path(b).resolve() == target)
            os.rename = rename(os.rename)
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1), os.dup2(null, 2)
            os._exit(main(args))
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])

    for line in sys.stdin:
        kill, args = json.loads(line)
        print(run(args, kill), flush=True)
""")


VOLATILE = ("metrics.json", "summary.md", "runs.jsonl")  # hold timings: two runs of one setting differ there


def state(root: Path) -> dict[str, str]:
    """What identifies the output at ``root`` (a directory or one file): every file's name, the bytes of
    those without timings, and the settings recorded in metrics.json."""
    if root.is_file():
        return {root.name: hashlib.sha256(root.read_bytes()).hexdigest()}
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            key = str(path.relative_to(root))
            found[key] = "" if key.endswith(VOLATILE) else hashlib.sha256(path.read_bytes()).hexdigest()
    if (root / "metrics.json").is_file():
        found["settings"] = json.dumps(json.loads((root / "metrics.json").read_text())["settings"], sort_keys=True)
    return found


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp("crash") / "synth"
    write_synthetic(SyntheticConfig(items=240, users=40, interactions=2400, dim=8, topics=(4, 3), seed=0), out)
    return out


def commands(data: Path, work: Path) -> dict[str, tuple[list[str], list[str]]]:
    d, out = str(data), str(work / "out")  # every run but the first replaces an earlier one: --overwrite
    compare = ["compare", "--data", d, "--methods", "rq-kmeans", "--levels", "2", "--no-stability", "--samples",
               "3", "--rho", "0.1", "--no-report", "--threads", "1", "--overwrite", "--out", out]
    rank = ["rank", "--data", d, "--features", "hash", "--epochs", "1", "--history", "4", "--no-report",
            "--threads", "1", "--overwrite", "--out", out]
    retrieve = ["retrieve", "--data", d, "--models", "popularity", "--history", "4", "--no-report", "--threads",
                "1", "--overwrite", "--out", out]
    return {
        "compare": ([*compare, "--codebook-size", "4"], [*compare, "--codebook-size", "8"]),
        "rank": ([*rank, "--seeds", "1"], [*rank, "--seeds", "2"]),
        "retrieve": ([*retrieve, "--seeds", "1"], [*retrieve, "--seeds", "2"]),
    }


@pytest.mark.parametrize("command", [pytest.param(name, marks=pytest.mark.slow) for name in ("compare", "rank",
                                                                                             "retrieve")] + ["encode"])
def test_kill_9_over_an_earlier_output_leaves_the_old_one_or_the_new_one_and_the_next_run_cleans_up(
        data, tmp_path, command):
    if command == "encode":
        from sidkit.data.dataset import load_dataset
        from sidkit.tokenizers.rq_kmeans import RQKMeans

        for name, size in (("m4", 4), ("m8", 8)):
            RQKMeans(levels=2, codebook_size=size, seed=0).fit(load_dataset(data).catalog.embeddings).save(
                tmp_path / name)
        base = ["encode", "--data", str(data), "--out", str(tmp_path / "out")]
        (tmp_path / "out").mkdir()  # encode writes a file: codes of the old model, then of the new one
        base[-1] = str(tmp_path / "out" / "codes.parquet")
        old, new = [*base, "--model", str(tmp_path / "m4")], [*base, "--model", str(tmp_path / "m8")]
        output = tmp_path / "out" / "codes.parquet"
    else:
        old, new = commands(data, tmp_path)[command]
        output = tmp_path / "out"
    kills = ["first-rename", "before-swap", "after-swap"]
    plan = [("none", old), ("none", new), ("none", old), *((kill, new) for kill in kills), ("none", old)]
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    process = subprocess.Popen([sys.executable, str(driver)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    codes, states, beside = [], [], []
    try:
        for kill, args in plan:
            process.stdin.write(json.dumps([kill, args]) + "\n")
            process.stdin.flush()
            codes.append(int(process.stdout.readline()))
            states.append(state(output))
            beside.append(sorted(p.name for p in output.parent.iterdir() if p.name.startswith(".")))
        process.stdin.close()
        assert process.wait(timeout=120) == 0, process.stderr.read()[-2000:]
    finally:
        process.kill()
        process.wait(timeout=60)
    old_state, new_state = states[0], states[1]
    assert codes[:3] == [0, 0, 0] and old_state != new_state and states[2] == old_state
    assert beside[:3] == [[], [], []]
    for number, kill in enumerate(kills, start=3):
        assert codes[number] == -9, (kill, codes)  # the kill did happen at that moment
        expected = new_state if kill == "after-swap" else old_state
        assert states[number] == expected, (kill, sorted(set(states[number]) ^ set(expected)))
    assert any(beside[3:6]), beside  # the kills left temporaries beside the output...
    assert codes[-1] == 0 and states[-1] == old_state and beside[-1] == []  # ...which the next run removes


def test_a_stale_staging_directory_of_a_dead_run_is_taken_over_not_refused(data, tmp_path):
    """A retrieve or rank run killed with kill -9 leaves ``.NAME.partial``; the next run takes it over."""
    from sidkit.cli import main
    from sidkit.io import staging_dir

    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)
    from sidkit import io as sio

    out = tmp_path / "run"
    staging = staging_dir(out)
    staging.mkdir()
    (staging / ".writer").write_text(f"{sio._HOST}-{dead}")
    (staging / "runs.jsonl").write_text("")
    assert main(["retrieve", "--data", str(data), "--models", "popularity", "--history", "4", "--seeds", "1",
                 "--no-report", "--out", str(out)]) == 0
    assert (out / "metrics.json").is_file() and not staging.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
