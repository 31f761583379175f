"""An incremental SID registry: item -> Semantic ID in SQLite, where an assigned SID never changes.

New items get codes from a frozen tokenizer; items already registered are skipped, whatever their
embedding is now, so downstream models keep their SIDs. Items sharing codes are told apart by the
dedup digit, an extra last level: the first item of a SID gets 0, and new colliders get the next
free values (max + 1, ...), ordered by their distance to the reconstruction (closest first), then
by item id. Existing rows are never updated.

An assign is one SQLite transaction (``BEGIN IMMEDIATE``: one writer at a time) in WAL mode, so an
interrupted assign (an exception, a kill) leaves the registry exactly as it was, and readers keep
reading the last committed state while it runs. The registry records the identity of its model
(:func:`model_fingerprint`) on the first assign and refuses any other model.

Tables::

    meta(key, value)                      format, format_version, model_hash, tokenizer, sizes, id_kind
    items(item_id, level_0 .. level_{L-1}, dedup)     UNIQUE (level_0 .. level_{L-1}, dedup)
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sidkit import __version__
from sidkit.data.validation import as_id_array
from sidkit.errors import ConfigError, DataError, SidkitError, StorageError, storage_error
from sidkit.io import check_output_path, make_parent, remove_made
from sidkit.progress import Bar
from sidkit.stream.source import DEFAULT_CHUNK_ROWS, Chunk, EmbeddingSource, check_chunk_rows
from sidkit.tokenizers.base import CONFIG_FILE, WEIGHTS_FILE, Tokenizer, load_tokenizer

FORMAT_NAME = "sidkit-registry"
FORMAT_VERSION = 1
#: ``PRAGMA application_id`` of every registry ("SIDR"): SQLite files of other programs are refused.
APPLICATION_ID = 0x53494452
_LOOKUP_BATCH = 10_000  # ids per SELECT ... IN (...), below SQLite's variable limit


@dataclass(frozen=True)
class RegisteredSid:
    """One item's SID: its codes (length L) and its dedup digit."""

    item_id: int | str
    codes: tuple[int, ...]
    dedup: int

    def to_string(self) -> str:
        """``"12-4-9-0"``: the codes, then the dedup digit."""
        return "-".join(str(code) for code in (*self.codes, self.dedup))


@dataclass(frozen=True)
class AssignResult:
    """What one assign did.

    Attributes:
        added: new items given a SID.
        existing: input items already registered (left as they were).
        collided: new items whose codes another item already had (dedup digit > 0).
        total: items in the registry after the assign.
        seconds: wall time.
    """

    added: int
    existing: int
    collided: int
    total: int
    seconds: float


def model_fingerprint(model_dir: str | os.PathLike[str]) -> str:
    """sha256 of a saved tokenizer: its weights file and its config (less ``sidkit_version``, which a
    re-save by another sidkit changes while the model stays the same)."""
    root = Path(model_dir)
    config_path, weights_path = root / CONFIG_FILE, root / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise DataError(f"{path.name} is missing", where=str(root), fix="pass a directory written by `sidkit fit`")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("sidkit_version", None)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode())
    with open(weights_path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class SidRegistry:
    """An open registry file. Use as a context manager, or call :meth:`close`.

    Args:
        path: the SQLite file, a plain file path (never read as an SQLite URI). Created, with its
            folder, unless ``readonly``.
        readonly: open for lookups only; the file must exist. Works on read-only media too.
        timeout: seconds to wait for another writer before giving up.

    Raises:
        DataError: the file is not a sidkit registry (another program's SQLite file, not SQLite at
            all), or it is damaged.
        StorageError: the file or its folder cannot be read or written (missing, read-only, full).
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._meta: dict[str, str] = {}
        if self.path.is_dir():
            raise StorageError(f"{self.path} is a directory, not a registry file", where=str(self.path),
                               fix="pass a file path such as sids.sqlite")
        if readonly and not self.path.is_file():
            raise DataError(f"registry {self.path} does not exist", where=str(self.path),
                            fix="create it with `sidkit assign --model MODEL --registry PATH --data DIR`")
        if not readonly:
            check_output_path(self.path, directory=False)
            make_parent(self.path)
        with _sqlite_errors(self.path, "read" if readonly else "open"):
            self._db = _open_readonly(self.path, timeout) if readonly else sqlite3.connect(
                os.path.abspath(self.path), timeout=timeout, isolation_level=None)  # absolute: never a URI
        try:
            with _sqlite_errors(self.path, "read" if readonly else "open"):
                self._check_marker(writable=not readonly)
                self._meta = self._read_meta()
        except BaseException:
            self._db.close()
            raise

    def _check_marker(self, *, writable: bool) -> None:
        """Refuse files that are not sidkit registries; give a new (empty) file the marker and the tables."""
        application_id = int(self._db.execute("PRAGMA application_id").fetchone()[0])
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if application_id == APPLICATION_ID:
            version = int(self._db.execute("PRAGMA user_version").fetchone()[0])
            if version > FORMAT_VERSION:
                raise DataError(f"the registry was written by a newer sidkit (format {version}; this sidkit reads "
                                f"{FORMAT_VERSION})", where=str(self.path), fix="upgrade sidkit")
            if "meta" not in tables:
                raise _damaged(self.path, "its meta table is missing")
            return
        if application_id != 0:
            raise DataError(f"{self.path} is an SQLite database of another program (application id "
                            f"{application_id:#x}), not a sidkit registry", where=str(self.path),
                            fix="pass a new path for the registry; sidkit never changes other programs' files")
        if not tables:  # a new or empty file: make it a registry
            if not writable:
                raise DataError(f"{self.path} is an empty SQLite file, not a sidkit registry", where=str(self.path),
                                fix="create one with `sidkit assign --model MODEL --registry PATH --data DIR`")
            self._db.execute("PRAGMA journal_mode=WAL")
            with self._transaction("BEGIN IMMEDIATE"):
                self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self._db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")
                self._db.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
                self._db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)",
                                     (("format", FORMAT_NAME), ("format_version", str(FORMAT_VERSION))))
            return
        legacy = "meta" in tables and dict(self._db.execute(
            "SELECT key, value FROM meta WHERE key = 'format'").fetchall()).get("format") == FORMAT_NAME
        if not legacy:
            shown = ", ".join(sorted(tables)[:5])
            raise DataError(f"{self.path} is an SQLite database without sidkit's registry marker (tables: {shown})",
                            where=str(self.path),
                            fix="pass a new path for the registry; sidkit never changes other programs' files")
        if writable:  # written by a sidkit from before the marker: stamp it
            with self._transaction("BEGIN IMMEDIATE"):
                self._db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                self._db.execute(f"PRAGMA user_version = {FORMAT_VERSION}")

    def _read_meta(self) -> dict[str, str]:
        """The meta table, checked: a damaged registry is reported as such, not used."""
        meta = {str(key): str(value) for key, value in self._db.execute("SELECT key, value FROM meta").fetchall()}
        if meta.get("format") != FORMAT_NAME:
            raise _damaged(self.path, f"its meta table names format {meta.get('format')!r}")
        version = meta.get("format_version", "")
        if not version.isdigit():
            raise _damaged(self.path, f"its format version {version!r} is not a number")
        if int(version) > FORMAT_VERSION:
            raise DataError(f"the registry was written by a newer sidkit (format {version}; this sidkit reads "
                            f"{FORMAT_VERSION})", where=str(self.path), fix="upgrade sidkit")
        if meta.get("id_kind", "int") not in ("int", "str"):
            raise _damaged(self.path, f"its id kind {meta['id_kind']!r} is neither int nor str")
        if "sizes" in meta:
            try:
                sizes = json.loads(meta["sizes"])
            except ValueError:
                sizes = None
            if not isinstance(sizes, list) or not sizes or not all(
                    isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in sizes):
                raise _damaged(self.path, f"its codebook sizes {meta['sizes'][:40]!r} are not a list of positive "
                               "integers")
            if not meta.get("model_hash"):
                raise _damaged(self.path, "it records codebook sizes but no model")
            columns = [row[1] for row in self._db.execute("PRAGMA table_info(items)")]
            expected = ["item_id", *(f"level_{level}" for level in range(len(sizes))), "dedup"]
            if columns != expected:
                raise _damaged(self.path, "its items table is missing" if not columns else
                               f"its items table has columns {columns[:8]}, expected {expected[:8]}")
        return meta

    def __enter__(self) -> SidRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()

    # ----- what the registry holds ---------------------------------------------------------------

    @property
    def model_hash(self) -> str | None:
        """The fingerprint of the registry's model; None before the first assign."""
        return self._meta.get("model_hash")

    @property
    def sizes(self) -> tuple[int, ...] | None:
        """Codebook sizes of the model's levels (the dedup digit not included); None before the first assign."""
        return tuple(json.loads(self._meta["sizes"])) if "sizes" in self._meta else None

    def __len__(self) -> int:
        if "sizes" not in self._meta:
            return 0
        with _sqlite_errors(self.path, "read"):
            return int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def lookup(self, item_ids: Iterable[Any]) -> dict[int | str, RegisteredSid]:
        """SIDs of the registered items among ``item_ids`` (ids not registered are absent), all read
        from one snapshot of the registry. String ids of an integer registry are converted."""
        ids = self._as_ids(list(item_ids))
        if "sizes" not in self._meta or len(ids) == 0:
            return {}
        levels = len(self.sizes or ())
        found: dict[int | str, RegisteredSid] = {}
        with _sqlite_errors(self.path, "read"), self._transaction("BEGIN"):  # one read snapshot for every batch
            for start in range(0, len(ids), _LOOKUP_BATCH):
                batch = ids[start:start + _LOOKUP_BATCH].tolist()
                marks = ",".join("?" * len(batch))
                for row in self._db.execute(f"SELECT item_id, {self._level_list()}, dedup FROM items "
                                            f"WHERE item_id IN ({marks})", batch):
                    found[row[0]] = RegisteredSid(row[0], tuple(row[1:1 + levels]), row[1 + levels])
        return found

    # ----- assigning -----------------------------------------------------------------------------

    def assign(self, tokenizer: Tokenizer, model_hash: str, chunks: Iterable[Chunk], *,
               total_rows: int | None = None, on_chunk: Callable[[int], None] | None = None,
               progress: bool | None = None) -> AssignResult:
        """Give every new item of ``chunks`` a SID, in one transaction; see the module docstring.

        Args:
            tokenizer: the frozen tokenizer (the registry's model).
            model_hash: its :func:`model_fingerprint`.
            chunks: embeddings with their ``item_ids`` (every chunk must have ids).
            total_rows: rows in all chunks, for the progress bar.
            on_chunk: called with the rows read so far after each chunk is staged (inside the
                transaction, before anything is committed).
            progress: show a bar (None: when stderr is a terminal).

        Raises:
            ConfigError: the registry belongs to another model.
            DataError: an item id repeats in the input, ids are missing, or of another kind than before.
        """
        started = time.perf_counter()
        try:
            with _sqlite_errors(self.path, "write"), self._transaction("BEGIN IMMEDIATE"):
                self._meta = self._read_meta()
                self._claim(tokenizer, model_hash)
                levels = tokenizer.levels
                self._db.execute("CREATE TEMP TABLE incoming(item_id PRIMARY KEY, chunk INTEGER NOT NULL)")
                self._db.execute("CREATE INDEX temp.incoming_chunk ON incoming(chunk)")
                columns = ", ".join(f"level_{level} INTEGER NOT NULL" for level in range(levels))
                self._db.execute(f"CREATE TEMP TABLE staged(item_id PRIMARY KEY, {columns}, distance REAL NOT NULL)")
                existing = rows = 0
                with Bar("assign", total_rows or 0, enabled=progress, rate_unit="rows") as bar:
                    for number, chunk in enumerate(chunks):
                        existing += self._stage(tokenizer, chunk, number)
                        rows += len(chunk)
                        bar.advance(len(chunk))
                        if on_chunk is not None:
                            on_chunk(rows)
                added, collided = self._insert_staged(levels)
                total = int(self._db.execute("SELECT COUNT(*) FROM items").fetchone()[0])
        finally:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("DROP TABLE IF EXISTS temp.incoming")
                self._db.execute("DROP TABLE IF EXISTS temp.staged")
            # After a rollback the in-memory view of meta must forget what this assign wrote.
            with contextlib.suppress(sqlite3.Error, SidkitError):
                self._meta = self._read_meta()
        return AssignResult(added, existing, collided, total, time.perf_counter() - started)

    def _claim(self, tokenizer: Tokenizer, model_hash: str) -> None:
        """Record the model on the first assign; refuse a different one afterwards."""
        known = self._meta.get("model_hash")
        if known is None:
            levels = ", ".join(f"level_{level} INTEGER NOT NULL" for level in range(tokenizer.levels))
            self._db.execute(f"CREATE TABLE items(item_id PRIMARY KEY, {levels}, dedup INTEGER NOT NULL) "
                             "WITHOUT ROWID")
            self._db.execute(f"CREATE UNIQUE INDEX items_sid ON items({self._level_list(tokenizer.levels)}, dedup)")
            meta = {"model_hash": model_hash, "tokenizer": type(tokenizer).__name__,
                    "sizes": json.dumps(list(tokenizer.codebook_sizes)), "created": dt.datetime.now(dt.UTC).isoformat(),
                    "sidkit_version": __version__}
            self._db.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", meta.items())
            self._meta.update(meta)
        elif known != model_hash:
            raise ConfigError(f"the registry was built with model {known[:12]} ({self._meta.get('tokenizer')}, sizes "
                              f"{self._meta.get('sizes')}), not this one ({model_hash[:12]}); assigning with another "
                              "model would give SIDs from a different code space", where=str(self.path),
                              fix="pass the model the registry was built with, or start a new registry file")

    def _stage(self, tokenizer: Tokenizer, chunk: Chunk, number: int) -> int:
        """Stage the chunk's new items with their codes; returns how many were registered already."""
        if chunk.item_ids is None:
            raise DataError("the embeddings come without item ids", where="assign",
                            fix="pass a dataset directory (items.parquet + embeddings.npy) or a parquet file "
                            "with an item_id column")
        ids = self._as_ids(chunk.item_ids, record=True)
        try:
            self._db.executemany("INSERT INTO incoming(item_id, chunk) VALUES (?, ?)",
                                 ((item, number) for item in ids.tolist()))
        except sqlite3.IntegrityError:
            seen = np.unique(ids, return_counts=True)
            repeated = seen[0][seen[1] > 1]
            example = repeated[0] if len(repeated) else "an id of an earlier chunk"
            raise DataError(f"item id {example!r} appears more than once in the input", where="item_id",
                            fix="give every item one row") from None
        old = {row[0] for row in self._db.execute(
            "SELECT i.item_id FROM incoming i JOIN items t ON t.item_id = i.item_id WHERE i.chunk = ?", (number,))}
        keep = np.fromiter((item not in old for item in ids.tolist()), dtype=bool, count=len(ids))
        if keep.any():
            x = chunk.embeddings[keep]
            codes = tokenizer.encode(x, batch_size=max(1, len(x))).codes
            distance = np.square(x.astype(np.float64) - tokenizer.decode(codes)).sum(axis=1)
            marks = ", ".join("?" * (tokenizer.levels + 2))
            rows = zip(ids[keep].tolist(), *codes.T.tolist(), distance.tolist(), strict=True)
            self._db.executemany(f"INSERT INTO staged VALUES ({marks})", rows)
        return len(old)

    def _insert_staged(self, levels: int) -> tuple[int, int]:
        """Move staged items into ``items`` with their dedup digits; returns (added, collided)."""
        level_list = self._level_list(levels)
        match = " AND ".join(f"i.level_{level} = s.level_{level}" for level in range(levels))
        staged = ", ".join(f"s.level_{level}" for level in range(levels))
        # SQLite materializes a SELECT that reads the table being written before inserting anything,
        # so every new item sees the maxima of the committed rows only.
        self._db.execute(
            f"INSERT INTO items(item_id, {level_list}, dedup) "
            f"SELECT s.item_id, {staged}, "
            f"COALESCE((SELECT MAX(i.dedup) FROM items i WHERE {match}), -1) "
            f"+ ROW_NUMBER() OVER (PARTITION BY {staged} ORDER BY s.distance, s.item_id) FROM staged s")
        added = int(self._db.execute("SELECT changes()").fetchone()[0])
        collided = int(self._db.execute(
            "SELECT COUNT(*) FROM staged s JOIN items i ON i.item_id = s.item_id WHERE i.dedup > 0").fetchone()[0])
        return added, collided

    # ----- helpers -------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[None]:
        try:
            self._db.execute(begin)
        except sqlite3.OperationalError as error:
            if _primary_code(error) not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            raise StorageError(f"the registry is busy: {error}", where=str(self.path),
                               fix="another assign may be running; wait for it and try again") from None
        try:
            yield
        except BaseException:
            # SQLite may have rolled back already (a full disk does): then there is nothing to undo.
            if self._db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _level_list(self, levels: int | None = None) -> str:
        count = levels if levels is not None else len(self.sizes or ())
        return ", ".join(f"level_{level}" for level in range(count))

    def _as_ids(self, values: Sequence[Any] | np.ndarray, *, record: bool = False) -> np.ndarray:
        """Ids as int64 or str, of the registry's kind (recorded by the first assign)."""
        kind = self._meta.get("id_kind")
        raw = np.asarray(values)
        if kind == "int" and raw.dtype.kind in "US":  # ids typed on a command line
            try:
                raw = np.asarray([int(value) for value in raw.tolist()], dtype=object)
            except ValueError:
                raise DataError("this registry holds integer item ids", where="item_ids",
                                fix="pass integer ids") from None
        ids = as_id_array(raw, where="item_ids")
        got = "int" if ids.dtype.kind == "i" else "str"
        if kind is None and record:
            self._db.execute("INSERT INTO meta(key, value) VALUES ('id_kind', ?)", (got,))
            self._meta["id_kind"] = got
        elif kind is not None and kind != got and len(ids):
            raise DataError(f"this registry holds {kind} item ids, the input has {got} ids", where="item_ids",
                            fix=f"convert the item_id column to {'int64' if kind == 'int' else 'string'}")
        return ids


def assign(registry: str | os.PathLike[str], model_dir: str | os.PathLike[str],
           chunks: Iterable[Chunk] | EmbeddingSource, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
           on_chunk: Callable[[int], None] | None = None, progress: bool | None = None) -> AssignResult:
    """Open (or create) ``registry``, load the model in ``model_dir`` and assign SIDs to the new items.

    ``chunks``: an :class:`EmbeddingSource` with item ids (a parquet file with ``item_id``) or any
    iterable of :class:`Chunk`; for a dataset directory use
    :func:`sidkit.stream.source.open_dataset_embeddings`.
    """
    tokenizer = load_tokenizer(model_dir)
    fingerprint = model_fingerprint(model_dir)
    total = None
    if isinstance(chunks, EmbeddingSource):
        total = chunks.num_rows
        chunks = chunks.chunks(check_chunk_rows(chunk_rows))
    path = Path(registry)
    created = not path.exists()
    if created:
        check_output_path(path, directory=False)  # before any folder is made for it
    made = make_parent(path) if created else []
    try:
        with SidRegistry(path) as opened:
            return opened.assign(tokenizer, fingerprint, chunks, total_rows=total, on_chunk=on_chunk,
                                 progress=progress)
    except BaseException:
        if created:  # a first assign that failed leaves no registry behind, nor the folders made for it
            for leftover in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            remove_made(made)
        raise


def lookup(registry: str | os.PathLike[str], item_ids: Iterable[Any]) -> dict[int | str, RegisteredSid]:
    """SIDs of ``item_ids`` in ``registry`` (read-only; ids not registered are absent)."""
    with SidRegistry(registry, readonly=True) as opened:
        return opened.lookup(item_ids)


# ----- SQLite's failures as sidkit errors -------------------------------------------------------------


def _primary_code(error: sqlite3.Error) -> int | None:
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else None


def _damaged(path: Path, what: str) -> DataError:
    return DataError(f"the registry {path} is damaged: {what}", where=str(path),
                     fix="restore it from a backup, or rebuild it with `sidkit assign` into a new file")


@contextlib.contextmanager
def _sqlite_errors(path: Path, action: str) -> Iterator[None]:
    """SQLite's errors (and the file system's) while ``action``-ing the registry, as one-line sidkit errors."""
    try:
        yield
    except SidkitError:
        raise
    except sqlite3.Error as error:
        raise _registry_error(error, path, action) from None
    except OSError as error:
        raise storage_error(error, path) from None


def _registry_error(error: sqlite3.Error, path: Path, action: str) -> SidkitError:
    code = _primary_code(error)
    text = str(error)
    folder = path.parent if str(path.parent) else Path(".")
    if code == sqlite3.SQLITE_FULL or (code == sqlite3.SQLITE_IOERR and _nearly_full(folder)):
        return storage_error(OSError(errno.ENOSPC, "No space left on device"), path)
    if code in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB) or "decode" in text:  # bytes that are no text
        if code == sqlite3.SQLITE_NOTADB and _is_foreign_file(path):
            return DataError(f"{path} is not an SQLite file, so not a sidkit registry", where=str(path),
                             fix="pass a new path for the registry")
        return _damaged(path, text)
    if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
        return StorageError(f"the registry is busy: {text}", where=str(path),
                            fix="another assign may be running; wait for it and try again")
    if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM, sqlite3.SQLITE_AUTH):
        if not folder.is_dir():
            return StorageError(f"the folder {folder} does not exist", where=str(path),
                                fix="create it, or pass a registry path in an existing folder")
        if _read_only_fs(folder):
            return StorageError(f"cannot {action} the registry {path}: it is on a read-only file system",
                                where=str(path), fix="copy it to a writable disk, or use `sidkit lookup` to read it")
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            return StorageError(f"cannot {action} the registry {path}: permission denied (the file or its folder "
                                "is read-only to you)", where=str(path),
                                fix=f"fix the permissions (`ls -l {path}`), or use a copy in a folder you can write")
    if code == sqlite3.SQLITE_IOERR:
        return StorageError(f"input/output error on the registry {path}: {text}", where=str(path),
                            fix="check the disk or network file system, then run again")
    if code == sqlite3.SQLITE_ERROR:  # SQL that a registry of this format always accepts: tables are off
        return _damaged(path, text)
    return StorageError(f"cannot {action} the registry {path}: {text}", where=str(path),
                        fix="check the file, its folder and the disk")


def _nearly_full(folder: Path) -> bool:
    try:
        stats = os.statvfs(folder)
    except OSError:
        return False
    return stats.f_bavail * stats.f_frsize < (1 << 20)


def _read_only_fs(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _is_foreign_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(16) != b"SQLite format 3\x00"
    except OSError:
        return False


def _open_readonly(path: Path, timeout: float) -> sqlite3.Connection:
    """A read-only connection, on read-only media too (where SQLite cannot make the WAL index file)."""
    absolute = Path(os.path.abspath(path))
    quoted = urllib.parse.quote(str(absolute))
    if os.access(absolute, os.W_OK) and os.access(absolute.parent, os.W_OK | os.X_OK):
        # Where the file could be written, a read-write connection that refuses writes (query_only): as
        # the last one to close, it removes the WAL files, which a read-only connection leaves behind.
        db = sqlite3.connect(f"file:{quoted}?mode=rw", uri=True, timeout=timeout, isolation_level=None)
        db.execute("PRAGMA query_only = ON")
        return db
    uri = f"file:{quoted}?mode=ro"
    db = sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None)
    try:
        db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return db
    except sqlite3.Error as error:
        db.close()
        if _primary_code(error) not in (sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_READONLY) or os.access(
                absolute.parent, os.W_OK):
            raise
    wal = absolute.with_name(absolute.name + "-wal")
    if wal.is_file() and wal.stat().st_size > 0:
        raise StorageError(f"the registry's write-ahead log {wal} holds changes not yet in {path}, and its folder "
                           "is read-only, so they cannot be read", where=str(path),
                           fix="open the registry once where its folder is writable (any `sidkit lookup` does), "
                           "then copy it")
    # Nothing can change a file on read-only media: read it without locks or a WAL index.
    return sqlite3.connect(f"{uri}&immutable=1", uri=True, timeout=timeout, isolation_level=None)
