"""Inputs checked where they enter: .npy size against its header, dtypes, parquet columns, timestamps,
ids, MovieLens source files. Every case is one error line (or an intended success) and writes nothing."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidkit.cli import main
from sidkit.data.interactions import Interactions, as_timestamps, timestamp_unit
from sidkit.data.npy import read_npy_header
from sidkit.data.summary import summarize_dataset
from sidkit.data.validation import as_id_array
from sidkit.errors import DataError
from sidkit.stream.source import open_embeddings
from sidkit.tokenizers.base import check_embeddings
from sidkit.tokenizers.rq_kmeans import RQKMeans


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Fix:" in lines[0], err
    return lines[0]


def npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


X = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
BAD_NPY = {
    "truncated": (lambda: (npy_header(X.shape) + X.tobytes())[:-100], "truncated"),
    "more rows in the header": (lambda: npy_header((640, 4)) + X.tobytes(), "truncated"),
    "fewer rows in the header": (lambda: npy_header((32, 4)) + X.tobytes(), "longer than its header"),
    "header only": (lambda: npy_header((64, 4)), "truncated"),
    "empty file": (lambda: b"", "empty"),
    "not npy": (lambda: b"hello world" * 20, "cannot read"),
    "zero rows": (lambda: npy_header((0, 4)), "no embeddings"),
    "zero columns": (lambda: npy_header((5, 0)), "no embeddings"),
    "1-d": (lambda: npy_header((64,)) + X.tobytes(), r"not \(items, dim\)"),
    "strings": (lambda: npy_header((4, 4), "<U1") + b"\0" * 64, "not numbers"),
    "complex": (lambda: npy_header((4, 4), "<c8") + b"\0" * 128, "not numbers"),
    "bool": (lambda: npy_header((4, 4), "|b1") + b"\0" * 16, "not numbers"),
    "object (pickle)": (lambda: npy_header((4, 4), "|O") + b"\0" * 128, "not numbers"),
}


@pytest.mark.parametrize("case", sorted(BAD_NPY))
def test_a_bad_npy_is_refused_where_it_enters(tmp_path, case):
    make, words = BAD_NPY[case]
    path = tmp_path / "x.npy"
    path.write_bytes(make())
    with pytest.raises(DataError, match=words) as caught:
        read_npy_header(path)
    assert caught.value.fix
    with pytest.raises(DataError, match=words):
        open_embeddings(path)  # streamed reading (encode, diagnose, assign) checks the same way


def test_a_bad_npy_is_one_line_in_every_command_and_writes_nothing(tmp_path, capsys):
    np.save(tmp_path / "good.npy", X)
    assert main(["fit", "--levels", "1", "--codebook-size", "4", "--embeddings", str(tmp_path / "good.npy"),
                 "--out", str(tmp_path / "m")]) == 0
    (tmp_path / "bad.npy").write_bytes((npy_header(X.shape) + X.tobytes())[:-100])
    bad = str(tmp_path / "bad.npy")
    for args in (["fit", "--levels", "1", "--codebook-size", "4", "--embeddings", bad, "--out", str(tmp_path / "m2")],
                 ["encode", "--model", str(tmp_path / "m"), "--embeddings", bad, "--out", str(tmp_path / "c.npy")],
                 ["diagnose", "--model", str(tmp_path / "m"), "--embeddings", bad],
                 ["assign", "--model", str(tmp_path / "m"), "--embeddings", bad,
                  "--registry", str(tmp_path / "r.sqlite")]):
        assert main(args) == 2
        assert "truncated" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy", "good.npy", "m"]


def test_values_beyond_what_float32_distances_hold_name_the_rows():
    x = X.copy()
    x[5] *= 1e19
    x[9] = 3e18
    with pytest.raises(DataError, match=r"rows 5, 9") as caught:
        check_embeddings(x, where="fit(X)")
    assert "normalize" in caught.value.fix  # type: ignore[operator]
    with pytest.raises(DataError, match="rows 5, 9"):
        RQKMeans(1, 2).fit(x)
    x[5] = np.nan
    with pytest.raises(DataError, match="NaN or inf, first at row 5"):
        check_embeddings(x, where="fit(X)")
    check_embeddings(X * 1e6, where="fit(X)")  # large but safe


PARQUET = {
    "list of strings": (pa.array([["a", "b"]] * 4), "not a list of numbers"),
    "plain strings": (pa.array(["1,2"] * 4), "not a list of numbers"),
    "list of lists": (pa.array([[[1.0]]] * 4), "not a list of numbers"),
    "nulls inside lists": (pa.array([[1.0, None]] * 4), "values inside 'embedding' are null"),
    "null rows": (pa.array([[1.0, 2.0], None, [1.0, 2.0], [3.0, 4.0]]), "rows of 'embedding' are null"),
    "ragged lists": (pa.array([[1.0, 2.0], [1.0], [1.0, 2.0], [3.0, 4.0]]), "values, expected 2"),
}


@pytest.mark.parametrize("case", sorted(PARQUET))
def test_a_bad_parquet_embedding_column_is_refused(tmp_path, capsys, case):
    column, words = PARQUET[case]
    path = tmp_path / "e.parquet"
    pq.write_table(pa.table({"item_id": pa.array(range(4), pa.int64()), "embedding": column}), path)
    with pytest.raises(DataError, match=words):
        list(open_embeddings(path).chunks())
    assert main(["fit", "--levels", "1", "--codebook-size", "2", "--embeddings", str(path),
                 "--out", str(tmp_path / "m")]) == 2
    assert words in one_error_line(capsys)
    assert not (tmp_path / "m").exists()


def test_timestamps_in_any_unit_are_kept_and_their_unit_detected():
    seconds = np.array([880_000_000, 880_000_100], dtype=np.int64)
    for factor, unit in ((1, "s"), (1000, "ms"), (10**6, "us"), (10**9, "ns")):
        assert timestamp_unit(seconds * factor) == unit
    assert timestamp_unit(np.array([0, 5, 17])) == "s"  # step counters
    ticks = pa.array([880_000_000_000, 880_000_000_001], pa.timestamp("ms")).to_numpy(zero_copy_only=False)
    np.testing.assert_array_equal(as_timestamps(ticks), [880_000_000_000, 880_000_000_001])  # order kept
    np.testing.assert_array_equal(as_timestamps(np.array([1.5, 2.0])), [1, 2])


@pytest.mark.parametrize(("values", "words"), [
    (np.array([1e30, 1.0]), "do not fit in 64-bit"),
    (np.array([np.nan, 1.0]), "NaN or inf"),
    (np.array(["yesterday", "today"]), "expected numbers"),
    (np.array([2**64 - 1, 1], dtype=np.uint64), "64-bit"),
    (np.array(["NaT", "2020-01-01"], dtype="datetime64[s]"), "NaT"),
])
def test_timestamps_that_cannot_be_times_are_refused(values, words):
    with pytest.raises(DataError, match=words):
        Interactions(np.array([1, 2]), np.array([1, 2]), values)


def test_millisecond_timestamps_import_and_print_as_dates(tmp_path, capsys):
    pq.write_table(pa.table({"item_id": pa.array(range(3), pa.int64()), "text": ["a", "b", "c"]}),
                   tmp_path / "items.parquet")
    pq.write_table(pa.table({"user_id": [1, 1, 2], "item_id": [0, 1, 2],
                             "timestamp": pa.array([880_000_000_000, 880_000_001_000, 890_000_000_000], pa.int64())}),
                   tmp_path / "events.parquet")
    assert main(["data", "import", "--items", str(tmp_path / "items.parquet"), "--interactions",
                 str(tmp_path / "events.parquet"), "--out", str(tmp_path / "d")]) == 0
    rows = dict(summarize_dataset(tmp_path / "d").rows())
    assert rows["time range"] == "1997-11-20 .. 1998-03-15 (timestamps in ms)"
    assert "1997-11-20" in capsys.readouterr().out


@pytest.mark.parametrize(("values", "ok"), [
    (np.array([2**63 - 1, 0], dtype=np.uint64), True),
    (np.array([2**63, 0], dtype=np.uint64), False),
    ([2**63, 1], False),
    ([-(2**63) - 1], False),
    (np.array([9.3e18]), False),
    (["a", "b"], True),
])
def test_ids_outside_int64_are_refused_not_wrapped(values, ok):
    if ok:
        assert len(as_id_array(values, where="item_id")) == len(values)
    else:
        with pytest.raises(DataError, match="outside the 64-bit integer range"):
            as_id_array(values, where="item_id")


def grouplens_dir(tmp_path, **replace: str | bytes):
    source = tmp_path / "src"
    source.mkdir()
    files = {
        "u.item": "".join(f"{i}|Movie {i} (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 18 + ["1"]) + "\n"
                          for i in range(1, 6)),
        "u.user": "".join(f"{u}|30|M|other|12345\n" for u in range(1, 4)),
        "u.data": "".join(f"{1 + k % 3}\t{1 + k % 5}\t4\t{880000000 + k}\n" for k in range(30)),
    }
    files.update(replace)
    for name, text in files.items():
        (source / name).write_bytes(text if isinstance(text, bytes) else text.encode("latin-1"))
    return source


@pytest.mark.parametrize(("name", "text"), [
    ("u.data", "1\t2\tfive\t880000000\n"), ("u.data", "1\t2\n3\t4\n"), ("u.data", ""),
    ("u.data", bytes(range(256)) * 4), ("u.item", "1|Movie\n"), ("u.item", "x|Movie (1995)|a||u|" + "0|" * 18 + "0\n"),
    ("u.user", "1|30\n"), ("u.user", "1|old|M|other|12345\n"),
])
def test_a_malformed_movielens_file_is_named(tmp_path, capsys, name, text):
    source = grouplens_dir(tmp_path, **{name: text})
    assert main(["data", "fetch", "movielens-100k", "--source", str(source), "--out", str(tmp_path / "o")]) == 2
    line = one_error_line(capsys)
    assert f"the file at {source / name} is not the MovieLens format" in line
    assert not (tmp_path / "o").exists()


def test_a_well_formed_movielens_directory_still_loads(tmp_path):
    source = grouplens_dir(tmp_path)
    assert main(["data", "fetch", "movielens-100k", "--source", str(source), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "items.parquet").is_file()
