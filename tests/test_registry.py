"""The SID registry: stable SIDs across assigns, dedup digits, one model, and all-or-nothing assigns."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sidkit.errors import ConfigError, DataError
from sidkit.registry import SidRegistry, assign, lookup, model_fingerprint
from sidkit.stream.source import Chunk, open_embeddings
from sidkit.tokenizers.rq_kmeans import RQKMeans


@pytest.fixture(scope="module")
def catalog():
    rng = np.random.default_rng(5)
    return rng.normal(size=(2400, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def model(catalog, tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    RQKMeans(2, 4, refine_passes=0, seed=1).fit(catalog[:1000]).save(path)  # 16 SIDs: many collisions
    return path


def chunks(x, ids, step=300):
    for start in range(0, len(ids), step):
        yield Chunk(start, x[start:start + step], np.asarray(ids[start:start + step]))


def snapshot(path, ids):
    return {key: value.to_string() for key, value in lookup(path, ids).items()}


def test_existing_sids_never_change_and_every_sid_is_unique(catalog, model, tmp_path):
    path = tmp_path / "sids.sqlite"
    first = assign(path, model, chunks(catalog[:1500], np.arange(1500)))
    assert (first.added, first.existing, first.total) == (1500, 0, 1500)
    before = snapshot(path, range(1500))
    # Old items come back with moved embeddings: their SIDs must stay; new items get the next free digits.
    moved = catalog[:2400] + np.float32(0.5)
    second = assign(path, model, chunks(moved[500:], np.arange(500, 2400)))
    assert (second.added, second.existing, second.total) == (900, 1000, 2400)
    after = snapshot(path, range(2400))
    assert {key: after[key] for key in before} == before
    assert len(set(after.values())) == 2400  # codes + dedup digit identify one item
    # Per SID, the dedup digits are exactly 0 .. size - 1: new colliders took the next free values.
    groups: dict[str, list[int]] = {}
    for sid in after.values():
        *codes, digit = sid.split("-")
        groups.setdefault("-".join(codes), []).append(int(digit))
    assert all(sorted(digits) == list(range(len(digits))) for digits in groups.values())
    old_max = {}
    for sid in before.values():
        *codes, digit = sid.split("-")
        old_max["-".join(codes)] = max(old_max.get("-".join(codes), -1), int(digit))
    for key in range(1500, 2400):
        *codes, digit = after[key].split("-")
        assert int(digit) > old_max.get("-".join(codes), -1)


def test_colliders_are_ordered_by_distance(catalog, model, tmp_path):
    tokenizer = RQKMeans.load(model)
    x = catalog[:400]
    codes = tokenizer.encode(x).codes
    distance = np.square(x - tokenizer.decode(codes)).sum(1)
    assign(tmp_path / "r.sqlite", model, chunks(x, np.arange(400)))
    found = lookup(tmp_path / "r.sqlite", range(400))
    first = codes[0]
    same = np.flatnonzero((codes == first).all(axis=1))
    digits = [found[int(i)].dedup for i in same[np.argsort(distance[same], kind="stable")]]
    assert digits == list(range(len(same)))


def test_another_model_is_refused(catalog, model, tmp_path):
    path = tmp_path / "r.sqlite"
    assign(path, model, chunks(catalog[:100], np.arange(100)))
    other = tmp_path / "other"
    RQKMeans(2, 4, refine_passes=0, seed=9).fit(catalog[:1000]).save(other)
    with pytest.raises(ConfigError, match="built with model"):
        assign(path, other, chunks(catalog[100:200], np.arange(100, 200)))
    assert len(lookup(path, range(200))) == 100
    # Saving the same model again keeps its identity.
    RQKMeans.load(model).save(tmp_path / "again")
    assert model_fingerprint(tmp_path / "again") == model_fingerprint(model)


def test_bad_input_leaves_the_registry_as_it_was(catalog, model, tmp_path):
    path = tmp_path / "r.sqlite"
    assign(path, model, chunks(catalog[:300], np.arange(300)))
    before = snapshot(path, range(1000))
    ids = np.arange(300, 900)
    ids[550] = 400  # a repeat, in a later chunk
    with pytest.raises(DataError, match="more than once"):
        assign(path, model, chunks(catalog[300:900], ids))
    with pytest.raises(DataError, match="integer item ids"):
        assign(path, model, chunks(catalog[:10], np.array([f"s{i}" for i in range(10)])))
    assert snapshot(path, range(1000)) == before


def test_an_exception_before_commit_rolls_everything_back(catalog, model, tmp_path, monkeypatch):
    path = tmp_path / "r.sqlite"
    assign(path, model, chunks(catalog[:300], np.arange(300)))
    before = snapshot(path, range(600))
    original = SidRegistry._insert_staged

    def insert_then_fail(self, levels):
        original(self, levels)  # the rows are written, not committed
        raise RuntimeError("injected failure")

    monkeypatch.setattr(SidRegistry, "_insert_staged", insert_then_fail)
    with pytest.raises(RuntimeError, match="injected"):
        assign(path, model, chunks(catalog[:600], np.arange(600)))
    assert snapshot(path, range(600)) == before
    monkeypatch.undo()
    assert assign(path, model, chunks(catalog[:600], np.arange(600))).added == 300


CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from sidkit.registry import SidRegistry, assign
    from sidkit.stream.source import open_embeddings

    registry, model, data, flag = sys.argv[1:5]
    original = SidRegistry._insert_staged

    def insert_then_wait(self, levels):
        result = original(self, levels)  # every new row is written to the database, not committed
        open(flag, "w").close()
        time.sleep(120)
        return result

    SidRegistry._insert_staged = insert_then_wait
    assign(registry, model, open_embeddings(data), chunk_rows=200)
""")


def test_killed_mid_write_leaves_the_registry_unchanged_and_readers_see_a_snapshot(catalog, model, tmp_path):
    path = tmp_path / "r.sqlite"
    assign(path, model, chunks(catalog[:500], np.arange(500)))
    before = snapshot(path, range(2000))
    data = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": np.arange(2000), "embedding": list(catalog[:2000])}), data)
    flag = tmp_path / "written"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(model), str(data), str(flag)],
                             env={**os.environ, "SIDKIT_PROGRESS": "0"})
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            assert child.poll() is None, "the assign ended before it wrote"
            assert time.monotonic() < deadline, "the assign did not reach its write"
            time.sleep(0.05)
        # A reader while the writer holds 1500 uncommitted rows: the committed state, at once.
        started = time.monotonic()
        with SidRegistry(path, readonly=True) as reader:
            assert len(reader) == 500
            assert {k: v.to_string() for k, v in reader.lookup(range(2000)).items()} == before
        assert time.monotonic() - started < 5
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL
    assert snapshot(path, range(2000)) == before
    result = assign(path, model, open_embeddings(data))  # the registry is usable again
    assert (result.added, result.existing, result.total) == (1500, 500, 2000)


def test_lookup_of_a_missing_registry_says_how_to_make_one(tmp_path):
    with pytest.raises(DataError, match="sidkit assign"):
        lookup(tmp_path / "none.sqlite", [1])


def test_ids_from_a_parquet_source_and_string_ids(catalog, model, tmp_path):
    data = tmp_path / "x.parquet"
    pq.write_table(pa.table({"item_id": [f"i{k}" for k in range(50)], "embedding": list(catalog[:50])}), data)
    path = tmp_path / "r.sqlite"
    assert assign(path, model, open_embeddings(data), chunk_rows=7).added == 50
    found = lookup(path, ["i3", "nope"])
    assert list(found) == ["i3"] and len(found["i3"].codes) == 2


def test_cli_assign_and_lookup(catalog, model, tmp_path, capsys):
    from sidkit.cli import main
    from sidkit.data.dataset import EMBEDDINGS_FILE, ITEMS_FILE

    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"item_id": np.arange(100, 400), "text": ["t"] * 300}), data / ITEMS_FILE)
    np.save(data / EMBEDDINGS_FILE, catalog[:300])
    registry = tmp_path / "sids.sqlite"
    assert main(["assign", "--model", str(model), "--registry", str(registry), "--data", str(data)]) == 0
    assert "assigned 300 new items" in capsys.readouterr().out
    assert main(["assign", "--model", str(model), "--registry", str(registry), "--data", str(data)]) == 0
    assert "300 were registered already" in capsys.readouterr().out
    expected = lookup(registry, [100, 399])
    assert main(["lookup", "--registry", str(registry), "--json", "100", "399"]) == 0
    printed = capsys.readouterr().out
    assert expected[100].to_string() in printed and expected[399].to_string() in printed
    assert main(["lookup", "--registry", str(registry), "100", "7"]) == 1
    assert "not registered" in capsys.readouterr().out


# ----- reliability: paths, markers, damage, media ----------------------------------------------------


def small_registry(catalog, model, path, rows=60):
    return assign(path, model, chunks(catalog[:rows], np.arange(rows)))


def cli_error(capsys, args):
    from sidkit.cli import main

    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Fix:" in err and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("name", ["r.sqlite?mode=memory", "r#1.sqlite", "r%41.sqlite", "file:r.sqlite"])
def test_a_registry_path_is_a_plain_file_path_never_a_uri(catalog, model, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    small_registry(catalog, model, name)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]
    assert len(lookup(name, range(60))) == 60  # read back through the read-only path, also as a file name


def test_a_registry_carries_its_marker_and_foreign_sqlite_files_are_refused(catalog, model, tmp_path, capsys):
    import sqlite3

    path = tmp_path / "r.sqlite"
    small_registry(catalog, model, path)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == 0x53494452
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    db.close()
    foreign = tmp_path / "shop.sqlite"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE customers(id INTEGER PRIMARY KEY, name TEXT)")
    db.commit()
    db.close()
    before = foreign.read_bytes()
    with pytest.raises(DataError, match="without sidkit's registry marker"):
        small_registry(catalog, model, foreign)
    assert foreign.read_bytes() == before  # not one table added
    other_app = tmp_path / "app.sqlite"
    db = sqlite3.connect(other_app)
    db.execute("PRAGMA application_id = 1234")
    db.execute("CREATE TABLE meta(key, value)")
    db.commit()
    db.close()
    with pytest.raises(DataError, match="another program"):
        lookup(other_app, [1])
    (tmp_path / "text.sqlite").write_text("hello, not a database" * 10)
    assert "not an SQLite file" in cli_error(capsys, ["lookup", "--registry", str(tmp_path / "text.sqlite"), "1"])
    with pytest.raises(DataError, match="not an SQLite file"):
        small_registry(catalog, model, tmp_path / "text.sqlite")


def damage(path, *statements):
    import sqlite3

    db = sqlite3.connect(path)
    for statement in statements:
        db.execute(statement)
    db.commit()
    db.close()


DAMAGE = {
    "items table missing": ("DROP TABLE items",),
    "meta table missing": ("DROP TABLE meta",),
    "non-integer version": ("UPDATE meta SET value = 'one' WHERE key = 'format_version'",),
    "sizes not JSON": ("UPDATE meta SET value = '[4, ' WHERE key = 'sizes'",),
    "sizes not a list": ("UPDATE meta SET value = '4' WHERE key = 'sizes'",),
    "an unknown id kind": ("UPDATE meta SET value = 'float' WHERE key = 'id_kind'",),
    "a level column renamed": ("ALTER TABLE items RENAME COLUMN level_1 TO other",),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_a_damaged_registry_is_a_clear_error_for_lookup_and_assign(catalog, model, tmp_path, capsys, case):
    path = tmp_path / "r.sqlite"
    small_registry(catalog, model, path)
    damage(path, *DAMAGE[case])
    data = tmp_path / "x.parquet"
    pq.write_table(pa.table({"item_id": np.arange(5), "embedding": list(catalog[:5])}), data)
    for args in (["lookup", "--registry", str(path), "1"],
                 ["assign", "--model", str(model), "--registry", str(path), "--embeddings", str(data)]):
        assert "damaged" in cli_error(capsys, args)


def test_lookup_leaves_the_folder_as_it_was(catalog, model, tmp_path, capsys):
    """A lookup, good or failed, writes nothing beside the registry (not even SQLite's WAL files)."""
    path = tmp_path / "r.sqlite"
    small_registry(catalog, model, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite"]
    before = path.read_bytes()
    assert len(lookup(path, range(10))) == 10
    damage(path, *DAMAGE["items table missing"])
    damaged = path.read_bytes()
    assert "damaged" in cli_error(capsys, ["lookup", "--registry", str(path), "1"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.sqlite"] and path.read_bytes() == damaged != before


def test_corrupted_pages_are_a_clear_error(catalog, model, tmp_path, capsys):
    path = tmp_path / "r.sqlite"
    small_registry(catalog, model, path, rows=2000)
    data = bytearray(path.read_bytes())
    for offset in range(4096 + 100, min(len(data), 4096 * 4), 7):
        data[offset] = (data[offset] * 31 + 17) % 256
    path.write_bytes(bytes(data))
    assert "damaged" in cli_error(capsys, ["lookup", "--registry", str(path), *map(str, range(0, 2000, 50))])


def test_ids_outside_int64_are_refused_by_assign_and_lookup(catalog, model, tmp_path, capsys):
    data = tmp_path / "x.parquet"
    pq.write_table(pa.table({"item_id": pa.array([2**63 + k for k in range(5)], pa.uint64()),
                             "embedding": list(catalog[:5])}), data)
    with pytest.raises(DataError, match="outside the 64-bit integer range"):
        assign(tmp_path / "r.sqlite", model, open_embeddings(data))
    assert list(tmp_path.iterdir()) == [data]  # a first assign that fails leaves no registry file
    small_registry(catalog, model, tmp_path / "r.sqlite")
    for item in (str(2**63), "9" * 40):
        assert "64-bit" in cli_error(capsys, ["lookup", "--registry", str(tmp_path / "r.sqlite"), item])


def test_missing_folders_are_created_and_a_directory_is_refused(catalog, model, tmp_path):
    small_registry(catalog, model, tmp_path / "new" / "deeper" / "r.sqlite")
    assert len(lookup(tmp_path / "new" / "deeper" / "r.sqlite", range(60))) == 60
    (tmp_path / "dir.sqlite").mkdir()
    from sidkit.errors import StorageError

    with pytest.raises(StorageError, match="is a directory"):
        small_registry(catalog, model, tmp_path / "dir.sqlite")
    with pytest.raises(StorageError, match="is a directory"):
        lookup(tmp_path / "dir.sqlite", [1])


@pytest.mark.parametrize(("code", "words"), [(13, "disk is full"), (11, "damaged"), (26, "damaged"),
                                             (5, "busy"), (10, "input/output error")])
def test_sqlite_failures_are_reported_as_what_they_are(tmp_path, code, words):
    import sqlite3

    from sidkit.registry import _registry_error

    error = sqlite3.OperationalError("something went wrong")
    error.sqlite_errorcode = code  # type: ignore[attr-defined]
    assert words in str(_registry_error(error, tmp_path / "r.sqlite", "write"))


def test_readonly_and_missing_folders_are_named(tmp_path, monkeypatch):
    import sqlite3

    from sidkit import registry

    error = sqlite3.OperationalError("unable to open database file")
    error.sqlite_errorcode = 14  # type: ignore[attr-defined]
    assert "does not exist" in str(registry._registry_error(error, tmp_path / "gone" / "r.sqlite", "open"))
    monkeypatch.setattr(registry, "_read_only_fs", lambda folder: True)
    assert "read-only file system" in str(registry._registry_error(error, tmp_path / "r.sqlite", "open"))


def _read_only_copy(source, tmp_path):
    """``source`` in a folder SQLite cannot write: a read-only tmpfs (root) or a 0555 folder (other users)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        import shutil

        shutil.copy(source, folder / "r.sqlite")
        folder.chmod(0o555)
        return folder / "r.sqlite", lambda: folder.chmod(0o755)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("root without mount: cannot make read-only media here")
    import shutil

    shutil.copy(source, folder / "r.sqlite")
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    return folder / "r.sqlite", lambda: subprocess.run(["umount", "-l", str(folder)], check=False)


def test_lookup_works_on_read_only_media(catalog, model, tmp_path, capsys):
    from sidkit.cli import main

    path = tmp_path / "r.sqlite"
    small_registry(catalog, model, path)
    expected = snapshot(path, range(60))
    copy, undo = _read_only_copy(path, tmp_path)
    try:
        assert snapshot(copy, range(60)) == expected
        assert main(["lookup", "--registry", str(copy), "3"]) == 0
        assert expected[3] in capsys.readouterr().out
        data = tmp_path / "x.parquet"
        pq.write_table(pa.table({"item_id": np.arange(100, 105), "embedding": list(catalog[:5])}), data)
        err = cli_error(capsys, ["assign", "--model", str(model), "--registry", str(copy), "--embeddings", str(data)])
        assert "read-only" in err or "permission denied" in err
    finally:
        undo()


def test_sql_in_item_ids_stays_data(catalog, model, tmp_path):
    ids = ["1'); DROP TABLE items; --", "x\" OR 1=1 --", "'; DELETE FROM meta; --", "plain"]
    path = tmp_path / "r.sqlite"
    assert assign(path, model, chunks(catalog[:4], np.array(ids, dtype=object))).added == 4
    found = lookup(path, [*ids, "1"])
    assert sorted(found) == sorted(ids) and all(len(found[i].codes) == 2 for i in ids)
    with SidRegistry(path, readonly=True) as reader:
        assert len(reader) == 4 and reader.sizes == (4, 4)


WRITER = textwrap.dedent("""
    import sys
    import numpy as np
    from sidkit.registry import assign
    from sidkit.stream.source import Chunk

    registry, model, start = sys.argv[1], sys.argv[2], int(sys.argv[3])
    x = np.load(sys.argv[4])
    ids = np.arange(start, start + 600)  # overlaps the next writer's ids by 300
    print(assign(registry, model, [Chunk(0, x[ids], ids)]).added)
""")


@pytest.mark.slow  # four processes that each import torch
def test_concurrent_writers_give_one_row_per_item_and_unique_sids(catalog, model, tmp_path):
    np.save(tmp_path / "x.npy", catalog)
    path = tmp_path / "r.sqlite"
    small_registry(catalog, model, path, rows=10)  # the registry exists: the writers race on its rows only
    env = {**os.environ, "SIDKIT_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(model), str(start),
                                 str(tmp_path / "x.npy")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env) for start in (0, 300, 600, 900)]
    results = [writer.communicate(timeout=120) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0, 0, 0], [err[-500:] for _, err in results]
    assert sum(int(out) for out, _ in results) == 1500 - 10  # every item added once, by exactly one writer
    found = lookup(path, range(2000))
    assert sorted(found) == list(range(1500))
    assert len({sid.to_string() for sid in found.values()}) == 1500  # full SIDs (with the dedup digit) unique


def test_a_writer_past_the_lock_timeout_gets_a_clear_error(catalog, model, tmp_path):
    from sidkit.errors import StorageError
    from sidkit.tokenizers.base import load_tokenizer

    path = tmp_path / "r.sqlite"
    small_registry(catalog, model, path)
    data = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": np.arange(2000), "embedding": list(catalog[:2000])}), data)
    flag = tmp_path / "written"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(model), str(data), str(flag)],
                             env={**os.environ, "SIDKIT_PROGRESS": "0"})
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():  # the child now holds the write lock
            assert child.poll() is None and time.monotonic() < deadline, "the first writer did not reach its write"
            time.sleep(0.05)
        with SidRegistry(path, timeout=0.2) as second, pytest.raises(StorageError, match="busy") as caught:
            second.assign(load_tokenizer(model), model_fingerprint(model), chunks(catalog[60:70], np.arange(60, 70)))
        assert "wait" in caught.value.fix
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
    assert len(lookup(path, range(100))) == 60  # neither the killed writer nor the refused one changed it
