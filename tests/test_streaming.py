"""Streaming: chunked sources, incremental code files, and mergeable metrics equal their in-memory versions."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidkit.diagnostics.basic import basic_diagnostics
from sidkit.diagnostics.overlap import overlap_sweep
from sidkit.errors import DataError
from sidkit.ids import SemanticIds
from sidkit.stream.encode import stream_encode
from sidkit.stream.metrics import ReconstructionPartial, UsagePartial, merge_usage, stream_diagnose
from sidkit.stream.overlap import OverlapAccumulator, stream_overlap_sweep
from sidkit.stream.source import open_embeddings
from sidkit.tokenizers.rq_kmeans import RQKMeans


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(30, 12))
    x = (centers[rng.integers(0, 30, 3000)] + 0.4 * rng.normal(size=(3000, 12))).astype(np.float32)
    tokenizer = RQKMeans(3, 16, refine_passes=0, seed=2).fit(x)
    return x, tokenizer


@pytest.fixture(scope="module")
def npy_file(data, tmp_path_factory):
    path = tmp_path_factory.mktemp("src") / "x.npy"
    np.save(path, data[0])
    return path


@pytest.fixture(scope="module")
def parquet_dir(data, tmp_path_factory):
    """Three files with small row groups, so chunks straddle row groups and files."""
    x = data[0]
    root = tmp_path_factory.mktemp("pq")
    for part, rows in enumerate(np.array_split(np.arange(len(x)), 3)):
        table = pa.table({"item_id": [f"item{row}" for row in rows], "embedding": list(x[rows])})
        pq.write_table(table, root / f"part-{part}.parquet", row_group_size=170)
    return root


@pytest.mark.parametrize("chunk_rows", [1, 333, 3000, 10_000])
def test_npy_chunks_cover_the_rows_in_order(data, npy_file, chunk_rows):
    source = open_embeddings(npy_file)
    assert source.shape == data[0].shape
    chunks = list(source.chunks(chunk_rows)) if chunk_rows > 1 else list(source.chunks(chunk_rows))[:5]
    stacked = np.concatenate([chunk.embeddings for chunk in chunks])
    np.testing.assert_array_equal(stacked, data[0][: len(stacked)])
    assert all(len(chunk) == chunk_rows for chunk in chunks[:-1])
    assert chunks[0].embeddings.flags.writeable and chunks[0].item_ids is None


def test_parquet_directory_chunks_are_exact_and_keep_ids(data, parquet_dir):
    source = open_embeddings(parquet_dir)
    assert source.shape == data[0].shape and source.has_item_ids
    chunks = list(source.chunks(400))
    assert [len(c) for c in chunks] == [400] * 7 + [200]
    np.testing.assert_array_equal(np.concatenate([c.embeddings for c in chunks]), data[0])
    assert chunks[1].item_ids[0] == "item400" and chunks[1].start == 400


def test_parquet_one_column_per_dimension(data, tmp_path):
    x = data[0][:100]
    pq.write_table(pa.table({f"d{j}": x[:, j] for j in range(x.shape[1])}), tmp_path / "wide.parquet")
    chunk = next(open_embeddings(tmp_path / "wide.parquet").chunks(1000))
    np.testing.assert_array_equal(chunk.embeddings, x)


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_stream_encode_equals_in_memory_encode(data, npy_file, tmp_path, suffix):
    x, tokenizer = data
    out = tmp_path / f"codes{suffix}"
    result = stream_encode(tokenizer, npy_file, out, chunk_rows=700)
    expected = tokenizer.encode(x)
    assert result.num_items == len(x) and result.levels == 3
    if suffix == ".npy":
        np.testing.assert_array_equal(np.load(out), expected.codes)
    else:
        table = pq.read_table(out)
        assert table.column_names == ["level_0", "level_1", "level_2", "sid"]
        assert SemanticIds.from_table(table).equals(expected)
        assert table.column("sid").to_pylist() == expected.to_strings()
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left


def test_stream_encode_parquet_source_writes_its_ids(data, parquet_dir, tmp_path):
    x, tokenizer = data
    stream_encode(tokenizer, parquet_dir, tmp_path / "codes.parquet", chunk_rows=512)
    table = pq.read_table(tmp_path / "codes.parquet")
    assert table.column("item_id").to_pylist() == [f"item{i}" for i in range(len(x))]
    assert SemanticIds.from_table(table).equals(tokenizer.encode(x))


def test_stream_encode_given_ids_and_wrong_count(data, npy_file, tmp_path):
    x, tokenizer = data
    ids = np.arange(len(x)) * 10
    stream_encode(tokenizer, npy_file, tmp_path / "c.parquet", item_ids=ids, chunk_rows=1000)
    assert pq.read_table(tmp_path / "c.parquet").column("item_id").to_numpy().tolist() == ids.tolist()
    with pytest.raises(DataError, match="item ids for"):
        stream_encode(tokenizer, npy_file, tmp_path / "d.parquet", item_ids=ids[:5])


def test_a_failed_stream_leaves_the_old_file(data, tmp_path):
    x, tokenizer = data
    bad = x.copy()
    bad[2500, 3] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    out = tmp_path / "codes.parquet"
    out.write_text("old")
    with pytest.raises(DataError, match="NaN"):
        stream_encode(tokenizer, tmp_path / "bad.npy", out, chunk_rows=1000)
    assert out.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy", "codes.parquet"]


def test_sources_refuse_unusable_files(tmp_path):
    np.save(tmp_path / "f.npy", np.asfortranarray(np.ones((4, 3), np.float32)))
    with pytest.raises(DataError, match="C-ordered"):
        open_embeddings(tmp_path / "f.npy")
    (tmp_path / "x.csv").write_text("1,2\n")
    with pytest.raises(DataError, match="unsupported"):
        open_embeddings(tmp_path / "x.csv")
    with pytest.raises(DataError, match="does not exist"):
        open_embeddings(tmp_path / "missing.npy")


def test_stream_diagnose_equals_basic_diagnostics(data, npy_file):
    x, tokenizer = data
    assert stream_diagnose(tokenizer, npy_file, chunk_rows=640) == basic_diagnostics(tokenizer, x)


def test_partials_merge_to_the_whole(data):
    x, tokenizer = data
    ids = tokenizer.encode(x)
    x_hat = tokenizer.decode(ids)
    whole = basic_diagnostics(tokenizer, x)
    cuts = [0, 1, 900, 2000, len(x)]
    usage = [UsagePartial.from_codes(ids.codes[a:b], ids.sizes) for a, b in itertools.pairwise(cuts)]
    assert merge_usage(reversed(usage)).report() == whole.usage
    recon = [ReconstructionPartial.from_rows(x[a:b], x_hat[a:b]) for a, b in itertools.pairwise(cuts)]
    merged = recon[0].merge(*recon[1:]).report()
    for name in ("mse", "relative_error", "cosine"):
        assert getattr(merged, name) == pytest.approx(getattr(whole.reconstruction, name), rel=1e-12)


def test_stream_overlap_equals_overlap_sweep(data, npy_file):
    x, tokenizer = data
    expected = overlap_sweep(tokenizer, x, (0.05, 0.3), 3, seed=4)
    got = stream_overlap_sweep(tokenizer, npy_file, (0.05, 0.3), 3, seed=4)
    for a, b in zip(expected.reports, got.reports, strict=True):
        assert a.sigma == b.sigma and a.num_items == b.num_items
        for entry_a, entry_b in zip(a.levels + a.depths, b.levels + b.depths, strict=True):
            assert (entry_a.by, entry_a.index, entry_a.symbols) == (entry_b.by, entry_b.index, entry_b.symbols)
            assert entry_b.stats.overlap == pytest.approx(entry_a.stats.overlap, rel=1e-12)
            assert entry_b.flip_rate == pytest.approx(entry_a.flip_rate, rel=1e-12)
            assert entry_b.stats.effective_size_se == pytest.approx(entry_a.stats.effective_size_se, rel=1e-9)


def test_overlap_accumulators_merge(data):
    x, tokenizer = data
    rng = np.random.default_rng(0)
    codes = tokenizer.encode(x).codes
    draws = 3
    moved = tokenizer.encode(np.tile(x, (draws, 1)) + 0.2 * rng.normal(size=(draws * len(x), x.shape[1]))).codes
    whole = OverlapAccumulator(tokenizer.codebook_sizes, draws).update(codes, moved).finalize(0.1, 1.0)
    halves = []
    for part in (slice(0, 1000), slice(1000, None)):
        rows = np.arange(len(x))[part]
        chunk = np.concatenate([moved[s * len(x) + rows] for s in range(draws)])
        halves.append(OverlapAccumulator(tokenizer.codebook_sizes, draws).update(codes[rows], chunk))
    merged = halves[0].merge(halves[1]).finalize(0.1, 1.0)
    for a, b in zip(whole.levels + whole.depths, merged.levels + merged.depths, strict=True):
        assert b.stats.overlap == pytest.approx(a.stats.overlap, rel=1e-12) and a.flip_rate == b.flip_rate
        assert b.stats.effective_size_se == pytest.approx(a.stats.effective_size_se, rel=1e-9)


def test_cli_encode_streams_a_parquet_directory_and_diagnose_matches(data, parquet_dir, tmp_path, capsys):
    import json

    from sidkit.cli import main

    x, tokenizer = data
    tokenizer.save(tmp_path / "model")
    out = tmp_path / "codes.parquet"
    assert main(["encode", "--model", str(tmp_path / "model"), "--embeddings", str(parquet_dir),
                 "--out", str(out), "--chunk-rows", "500"]) == 0
    table = pq.read_table(out)
    assert SemanticIds.from_table(table).equals(tokenizer.encode(x)) and table.num_rows == len(x)
    assert main(["diagnose", "--model", str(tmp_path / "model"), "--embeddings", str(parquet_dir),
                 "--json", str(tmp_path / "d.json")]) == 0
    metrics = json.loads((tmp_path / "d.json").read_text())
    assert metrics["sid"] == basic_diagnostics(tokenizer, x).to_dict()["sid"]
    assert main(["encode", "--model", str(tmp_path / "model"), "--embeddings", str(parquet_dir),
                 "--out", str(out), "--backend", "spark"]) == 2
    assert "unknown backend" in capsys.readouterr().err
