"""Every command that writes, on a full disk and on read-only media (real tmpfs mounts): one line that
says so, exit 2, and nothing left on the disk, not even a folder made for the output."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest

from sidkit.cli import main
from sidkit.data.synthetic import SyntheticConfig, write_synthetic
from sidkit.tokenizers.rq_kmeans import RQKMeans


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    write_synthetic(SyntheticConfig(items=300, users=40, interactions=3000, dim=8, topics=(4, 3), seed=0),
                    root / "data")
    from sidkit.data.dataset import load_dataset

    RQKMeans(levels=2, codebook_size=4, seed=0).fit(load_dataset(root / "data").catalog.embeddings).save(
        root / "model")
    source = root / "grouplens"  # MovieLens-100K's files in miniature, for `data fetch --source`
    source.mkdir()
    (source / "u.item").write_text("".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|" + "|".join(
        ["0"] * 18 + ["1"]) + "\n" for i in range(1, 6)), encoding="latin-1")
    (source / "u.user").write_text("".join(f"{u}|30|M|other|12345\n" for u in range(1, 4)), encoding="latin-1")
    (source / "u.data").write_text("".join(f"{1 + k % 3}\t{1 + k % 5}\t4\t{880000000 + k}\n" for k in range(30)))
    return root


def writers(root: Path, out: Path) -> dict[str, list[str]]:
    d, m = str(root / "data"), str(root / "model")
    return {
        "encode": ["encode", "--model", m, "--data", d, "--out", str(out / "new" / "c.parquet")],
        "diagnose": ["diagnose", "--model", m, "--data", d, "--json", str(out / "new" / "d.json")],
        "assign": ["assign", "--model", m, "--data", d, "--registry", str(out / "new" / "r.sqlite")],
        "fit": ["fit", "--levels", "2", "--codebook-size", "4", "--data", d, "--out", str(out / "new" / "m")],
        "data synth": ["data", "synth", "--items", "1100", "--users", "20", "--interactions", "500", "--dim", "8",
                       "--out", str(out / "new" / "s")],
        "data import": ["data", "import", "--items", str(root / "data" / "items.parquet"), "--interactions",
                        str(root / "data" / "interactions.parquet"), "--out", str(out / "new" / "i")],
        "compare": ["compare", "--data", d, "--methods", "rq-kmeans", "--levels", "2", "--codebook-size", "4",
                    "--no-stability", "--no-report", "--samples", "3", "--rho", "0.1", "--out", str(out / "new" / "c")],
        "data fetch": ["data", "fetch", "movielens-100k", "--source", str(root / "grouplens"), "--out",
                       str(out / "new" / "f")],
        "retrieve": ["retrieve", "--data", d, "--models", "popularity", "--seeds", "1", "--history", "4",
                     "--no-report", "--out", str(out / "new" / "t")],
    }


COMMANDS = ["encode", "diagnose", "assign", "fit", "data synth", "data import", "data fetch", "compare", "retrieve"]


@contextlib.contextmanager
def tmpfs(folder: Path, *, full: bool = False, read_only: bool = False, holding: Path | None = None):
    folder.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        if holding is not None:
            shutil.copytree(holding, folder / holding.name)
        if full:
            with open(folder / "filler", "wb") as handle, contextlib.suppress(OSError):
                handle.write(b"\0" * (2 << 20))  # more than fits: the disk is full after this
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Fix:" in err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", COMMANDS)
def test_a_full_disk_is_one_line_and_leaves_nothing(inputs, tmp_path, capsys, command):
    with tmpfs(tmp_path / "full", full=True) as disk:
        assert main(writers(inputs, disk)[command]) == 2
        line = one_line(capsys)
        assert "disk is full" in line or "no space" in line.lower(), line
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("command", COMMANDS)
def test_read_only_media_is_one_line_before_any_work(inputs, tmp_path, capsys, command):
    with tmpfs(tmp_path / "ro", read_only=True) as disk:
        assert main(writers(inputs, disk)[command]) == 2
        assert "read-only" in one_line(capsys)
        assert list(disk.iterdir()) == []


@pytest.mark.parametrize("media", ["full", "read-only"])
def test_embed_into_a_dataset_on_full_or_read_only_media_keeps_the_dataset(tmp_path, capsys, media):
    import numpy as np

    from sidkit.data.catalog import ItemCatalog
    from sidkit.data.dataset import Dataset, save_dataset
    from sidkit.data.interactions import Interactions

    catalog = ItemCatalog(np.array([1, 2]), np.array(["space travel movie", "pasta recipes"], dtype=object))
    save_dataset(Dataset(catalog, Interactions(np.array([1]), np.array([2]), np.array([1]))), tmp_path / "data")
    with tmpfs(tmp_path / "disk", full=media == "full", read_only=media == "read-only",
               holding=tmp_path / "data") as disk:
        before = {p.name: p.read_bytes() for p in (disk / "data").iterdir()}
        assert main(["embed", "--data", str(disk / "data"), "--no-progress"]) == 2
        line = one_line(capsys)
        assert ("disk is full" in line) if media == "full" else ("read-only" in line), line
        assert {p.name: p.read_bytes() for p in (disk / "data").iterdir()} == before
        assert sorted(p.name for p in disk.iterdir()) == (["data", "filler"] if media == "full" else ["data"])
