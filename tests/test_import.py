"""Importing other people's files: a column mapping for csv/parquet, and RecBole's atomic files."""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from sidkit.cli import main
from sidkit.data import load_dataset
from sidkit.data.files import dataset_from_files, parse_column_mapping
from sidkit.data.movielens import fetch_movielens_100k, load_movielens_100k
from sidkit.data.recbole import find_atomic_files, load_recbole, read_atomic_file
from sidkit.errors import DataError


def write_movielens_style(root):
    """Files that name their columns as GroupLens' csv files do (userId, movieId, title, ...)."""
    pacsv.write_csv(pa.table({"movieId": [10, 20, 30], "title": ["Heat", "Up", "Alien"],
                              "year": [1995, 2009, 1979]}), root / "movies.csv")
    pacsv.write_csv(pa.table({"userId": [1, 1, 2, 2], "movieId": [10, 30, 20, 10], "when": [5, 6, 7, 9],
                              "stars": [4.0, 3.5, 5.0, 1.0]}), root / "ratings.csv")
    pacsv.write_csv(pa.table({"userId": [1, 2], "country": ["NL", "DE"]}), root / "people.csv")


MAPPING = {"item_id": "movieId", "user_id": "userId", "text": "title", "timestamp": "when", "rating": "stars"}


def test_a_column_mapping_reads_files_with_their_own_names(tmp_path):
    write_movielens_style(tmp_path)
    dataset = dataset_from_files(tmp_path / "movies.csv", tmp_path / "ratings.csv", users=tmp_path / "people.csv",
                                 columns=MAPPING)
    assert dataset.catalog.item_ids.tolist() == [10, 20, 30]
    assert list(dataset.catalog.text) == ["Heat", "Up", "Alien"] and list(dataset.catalog.columns) == ["year"]
    inter = dataset.interactions
    assert inter.user_ids.tolist() == [1, 1, 2, 2] and inter.item_ids.tolist() == [10, 30, 20, 10]
    assert inter.timestamps.tolist() == [5, 6, 7, 9] and inter.ratings.tolist() == [4.0, 3.5, 5.0, 1.0]
    assert dataset.users.column_names == ["user_id", "country"]


def test_mapping_mistakes_are_named(tmp_path):
    write_movielens_style(tmp_path)
    with pytest.raises(DataError, match=r"'movie_id' are in none of the files.*movieId"):
        dataset_from_files(tmp_path / "movies.csv", tmp_path / "ratings.csv",
                           columns={**MAPPING, "item_id": "movie_id"})
    with pytest.raises(DataError, match="there is a 'text' column already"):
        pacsv.write_csv(pa.table({"movieId": [10], "title": ["Heat"], "text": ["x"]}), tmp_path / "both.csv")
        dataset_from_files(tmp_path / "both.csv", tmp_path / "ratings.csv", columns=MAPPING)
    with pytest.raises(DataError, match="column 'timestamp' is missing"):
        dataset_from_files(tmp_path / "movies.csv", tmp_path / "ratings.csv",
                           columns={k: v for k, v in MAPPING.items() if k != "timestamp"})
    assert parse_column_mapping(["user_id=userId", " item_id = movieId "]) == {"user_id": "userId",
                                                                               "item_id": "movieId"}
    for bad in (["user_id"], ["=userId"], ["user_id="], ["a=b", "a=c"]):
        with pytest.raises(DataError, match="--map"):
            parse_column_mapping(bad)


def test_cli_import_with_map(tmp_path, capsys):
    write_movielens_style(tmp_path)
    args = ["data", "import", "--items", str(tmp_path / "movies.csv"), "--interactions", str(tmp_path / "ratings.csv"),
            "--out", str(tmp_path / "out")]
    assert main(args) == 2
    assert "column 'item_id' is missing" in capsys.readouterr().err
    mapped = [*args, *(f"--map={name}={column}" for name, column in MAPPING.items())]
    assert main(mapped) == 0
    assert load_dataset(tmp_path / "out").interactions.ratings.tolist() == [4.0, 3.5, 5.0, 1.0]
    assert main(["data", "import", "--out", str(tmp_path / "x")]) == 2
    assert "--recbole" in capsys.readouterr().err


def test_recbole_ml100k_matches_the_movielens_loader(tmp_path):
    directory = fetch_movielens_100k()
    generic = load_recbole(directory)
    reference = load_movielens_100k(directory)
    np.testing.assert_array_equal(generic.catalog.item_ids, reference.catalog.item_ids)
    for name in ("user_ids", "item_ids", "timestamps", "ratings"):
        np.testing.assert_array_equal(getattr(generic.interactions, name), getattr(reference.interactions, name))
    assert generic.catalog.text[0] == "Toy Story. Animation Children's Comedy"  # the token_seq fields, joined
    assert set(generic.catalog.columns) == {"movie_title", "release_year", "class"}
    assert generic.users.column_names == ["user_id", "age", "gender", "occupation", "zip_code"]
    assert generic.users.column("user_id").type == pa.int64()
    titled = load_recbole(directory / "ml-100k.inter", columns={"text": "movie_title"})
    assert titled.catalog.text[0] == "Toy Story" and "movie_title" not in titled.catalog.columns


def write_atomic(root, name, header, rows):
    lines = ["\t".join(header), *("\t".join(map(str, row)) for row in rows)]
    (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_recbole_generic_fields_labels_string_ids_and_warnings(tmp_path):
    write_atomic(tmp_path, "shop.inter", ["uid:token", "item_id:token", "timestamp:float", "buy:float",
                                          "session:token", "dwell:float"],
                 [["u1", "a", 10, 1, "s1", 3.5], ["u2", "b", 11, 0, "s1", 0.5], ["u1", "b", 12, 1, "s2", 1.0]])
    write_atomic(tmp_path, "shop.item", ["item_id:token", "name:token_seq", "brand:token", "tags:token_seq",
                                         "price:float"],
                 [["a", "red shoe", "acme", "shoes sport", 20.0], ["b", "blue hat", "hatco", "", 5.0]])
    with pytest.warns(UserWarning, match=r"session:token, dwell:float are neither"):
        dataset = load_recbole(tmp_path, columns={"user_id": "uid"})
    assert dataset.catalog.item_ids.tolist() == ["a", "b"]  # not all integers: strings
    assert list(dataset.catalog.text) == ["red shoe. shoes sport", "blue hat"]
    assert dataset.catalog.columns["price"].tolist() == [20.0, 5.0]
    inter = dataset.interactions
    assert inter.user_ids.tolist() == ["u1", "u2", "u1"] and inter.labels["buy"].tolist() == [1, 0, 1]
    assert inter.ratings is None and dataset.users is None
    table, types = read_atomic_file(tmp_path / "shop.item")
    assert types == {"item_id": "token", "name": "token_seq", "brand": "token", "tags": "token_seq", "price": "float"}
    assert table.column("price").type == pa.float64() and table.column("item_id").type == pa.string()


def test_recbole_errors(tmp_path):
    with pytest.raises(DataError, match=r"one NAME.inter file; found none"):
        find_atomic_files(tmp_path)
    write_atomic(tmp_path, "d.inter", ["user_id:token", "item_id:token", "timestamp:float"], [[1, 2, 3]])
    with pytest.raises(DataError, match=r"d.item is missing"):
        find_atomic_files(tmp_path)
    write_atomic(tmp_path, "d.item", ["item_id:token", "title:token_seq"], [[2, "x"]])
    assert load_recbole(tmp_path).interactions.item_ids.tolist() == [2]
    write_atomic(tmp_path, "d.inter", ["user_id:token", "item_id:token", "timestamp:float"], [[1, 2, 3.5]])
    with pytest.raises(DataError, match=r"whole numbers; row 1 has 3.5"):
        load_recbole(tmp_path)
    write_atomic(tmp_path, "d.inter", ["user_id:token", "item_id", "timestamp:float"], [[1, 2, 3]])
    with pytest.raises(DataError, match="is not name:type"):
        load_recbole(tmp_path)
    write_atomic(tmp_path, "d.inter", ["user_id:token", "item_id:token", "time:float"], [[1, 2, 3]])
    with pytest.raises(DataError, match=r"field 'timestamp' is missing.*Fix: map it"):
        load_recbole(tmp_path)
    with pytest.raises(DataError, match="'stamp' are in none of the files"):
        load_recbole(tmp_path, columns={"timestamp": "stamp"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_recbole(tmp_path, columns={"timestamp": "time"}).interactions.timestamps.tolist() == [3]


def test_cli_import_recbole(tmp_path, capsys):
    write_atomic(tmp_path, "d.inter", ["user_id:token", "item_id:token", "timestamp:float", "rating:float"],
                 [[1, 2, 3, 4.0], [1, 5, 4, 2.0]])
    write_atomic(tmp_path, "d.item", ["item_id:token", "title:token_seq"], [[2, "x"], [5, "y z"]])
    assert main(["data", "import", "--recbole", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert load_dataset(tmp_path / "out").manifest.source == "recbole (d)"
    assert main(["data", "import", "--recbole", str(tmp_path), "--items", "x.csv", "--out", str(tmp_path / "o2")]) == 2
    assert "either --recbole" in capsys.readouterr().err
