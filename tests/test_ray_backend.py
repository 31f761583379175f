"""The Ray backend gives the local path's codes and metrics; without Ray, a clear error.

The tests that run Ray start one local instance (2 CPUs) for the module and stop it afterwards.
"""

from __future__ import annotations

import importlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidkit.backends import ray_backend
from sidkit.errors import ConfigError
from sidkit.ids import SemanticIds
from sidkit.stream.metrics import stream_diagnose
from sidkit.tokenizers.rq_kmeans import RQKMeans


def test_a_missing_ray_says_how_to_install_it(monkeypatch):
    real = importlib.import_module

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(ray_backend.importlib, "import_module", no_ray)
    with pytest.raises(ConfigError, match=r"pip install 'sidkit\[ray\]'"):
        ray_backend.require_ray()


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray", reason="ray is not installed: pip install 'sidkit[ray]' to test the Ray backend")
    pytest.importorskip("ray.data", reason="Ray Data is not installed: pip install 'ray[data]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    # A pipeline stuck waiting for resources fails the test in minutes, not after Ray's 30 min default.
    ray.data.DataContext.get_current().execution_no_progress_timeout_s = 300
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 3-file parquet dataset with ids, the same rows as .npy, and a fitted model."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6000, 16)).astype(np.float32)
    root = tmp_path_factory.mktemp("ray")
    (root / "parts").mkdir()
    for part, rows in enumerate(np.array_split(np.arange(len(x)), 3)):
        table = pa.table({"item_id": rows.astype(np.int64), "embedding": list(x[rows])})
        pq.write_table(table, root / "parts" / f"part-{part}.parquet")
    np.save(root / "x.npy", x)
    tokenizer = RQKMeans(3, 16, refine_passes=0, seed=0).fit(x)
    tokenizer.save(root / "model")
    return root, x, tokenizer


# Slow (25 s on an idle 2-core machine, minutes on a busy one): each call starts its tokenizer actors,
# each importing torch. Run with `pytest -m slow tests/test_ray_backend.py` after `pip install 'sidkit[ray]'`.
@pytest.mark.slow
def test_ray_encode_and_diagnose_equal_local(ray_local, small):
    root, x, tokenizer = small
    options = ray_backend.RayOptions(batch_rows=1000, actors=2)
    expected = tokenizer.encode(x)

    result = ray_backend.ray_encode(root / "model", root / "parts", root / "codes_pq", options)
    assert result.num_items == len(x) and result.levels == 3
    table = pq.read_table(root / "codes_pq").sort_by("item_id")
    assert table.column("item_id").to_numpy().tolist() == list(range(len(x)))
    assert SemanticIds.from_table(table, expected.sizes).equals(expected)
    assert table.column("sid").to_pylist() == expected.to_strings()

    ray_backend.ray_encode(root / "model", root / "x.npy", root / "codes_npy", options)
    table = pq.read_table(root / "codes_npy").sort_by("row")
    assert SemanticIds.from_table(table, expected.sizes).equals(expected)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temporary directory left

    got = ray_backend.ray_diagnose(root / "model", root / "parts", options)
    local = stream_diagnose(tokenizer, root / "x.npy")
    assert got.usage == local.usage
    for name in ("mse", "relative_error", "cosine"):
        assert getattr(got.reconstruction, name) == pytest.approx(getattr(local.reconstruction, name), rel=1e-12)


@pytest.mark.slow
def test_a_data_error_in_a_ray_task_reaches_the_user_as_one_line(ray_local, small, tmp_path, capsys):
    from sidkit.cli import main
    from sidkit.errors import DataError

    root, x, _ = small
    bad = x[:500].copy()
    bad[123] = np.nan
    (tmp_path / "parts").mkdir()
    pq.write_table(pa.table({"item_id": np.arange(500), "embedding": list(bad)}), tmp_path / "parts" / "p.parquet")
    options = ray_backend.RayOptions(batch_rows=100, actors=1)
    with pytest.raises(DataError, match="NaN or inf") as caught:
        ray_backend.ray_encode(root / "model", tmp_path / "parts", tmp_path / "codes", options)
    assert type(caught.value) is DataError and "Traceback" not in str(caught.value)  # the task's error itself
    assert not (tmp_path / "codes").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert main(["encode", "--backend", "ray", "--model", str(root / "model"), "--embeddings",
                 str(tmp_path / "parts"), "--out", str(tmp_path / "codes")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "NaN or inf" in lines[0] and "Fix:" in lines[0], lines


def test_a_sidkit_error_survives_rays_wrapping_as_text():
    from sidkit.errors import DataError, StorageError

    for error in (DataError("3 rows hold NaN", where="ray batch rows 0..99", fix="drop them"),
                  StorageError("disk is full", where="/out", fix="free space")):
        carried = ray_backend._carry(error)
        wrapped = RuntimeError("ray::MapWorker failed\nTraceback (most recent call last):\n  ...\n" + str(carried))
        back = ray_backend._carried(wrapped)
        assert type(back) is type(error) and str(back) == str(error)
    assert ray_backend._carried(RuntimeError("sidkit-error:not-base64!")) is None
    assert ray_backend._carried(RuntimeError("no marker")) is None
