"""Atomic output: a reader never sees a half-written file or directory, and a failure leaves the old one.

- :func:`atomic_path` writes one file: to a temporary file beside the target, renamed over it at the end.
- :func:`atomic_dir` writes a directory output as a whole (a model, a compare or rank run, a dataset):
  into a temporary directory beside the target, swapped in at the end in one step, so a crash leaves
  the old directory or the new one, never a mix.
- :func:`check_output_path` refuses, before any work, an output that cannot be written.

Temporary names carry their writer (host and process id), ``.NAME.HOST-PID.RANDOM.tmp``; a later
write of the same target removes those whose writer is dead (a process killed with ``kill -9``
cannot clean up after itself). Outputs get the mode a plain ``open()`` would give (``0666`` less the
umask; ``0777`` less the umask for directories), whatever the writing library did to the file.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from sidkit.errors import SidkitError, StorageError, storage_error

_TEMP_SUFFIX = ".tmp"
_OLD_SUFFIX = ".old"
_NAME_LIMIT = 100  # of the target's name inside a temporary name (file names stop at 255 bytes)
_HOST = re.sub(r"[^A-Za-z0-9-]", "", socket.gethostname())[:32] or "host"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _owner() -> str:
    return f"{_HOST}-{os.getpid()}"


def _temp_prefix(target: Path) -> str:
    return f".{target.name[:_NAME_LIMIT]}."


def file_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the umask."""
    return 0o666 & ~_umask()


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError):  # Linux: read it without changing it (thread-safe)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def check_output_path(path: str | os.PathLike[str], *, directory: bool, where: str | None = None) -> Path:
    """Raise :class:`StorageError` now, before any work, if ``path`` cannot become an output.

    ``directory``: the output is a directory (else a file). Refused: a path whose existing kind is
    the other one, a parent that is a file, and the nearest existing folder not being writable.
    """
    target = Path(path)
    label = where or str(target)
    if directory and target.exists() and not target.is_dir():
        raise StorageError(f"{target} is a file, and the output is a directory", where=label,
                           fix="pass a directory path (new, or one this command wrote before)")
    if not directory and target.is_dir():
        raise StorageError(f"{target} is a directory, and the output is a file", where=label,
                           fix=f"pass a file path, e.g. {target / 'out'}{target.suffix or ''}")
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise StorageError(f"{folder} is a file, so {target} cannot be created", where=label,
                           fix="remove or rename that file, or choose another path")
    if not os.access(folder, os.W_OK | os.X_OK):
        read_only = _is_read_only(folder)
        raise StorageError(f"cannot write in {folder}: " + ("it is on a read-only file system" if read_only
                                                         else "permission denied"), where=label,
                           fix="choose a folder you can write to" + ("" if read_only else
                                                                  f", or change its permissions (`ls -ld {folder}`)"))
    return target


def _is_read_only(folder: Path) -> bool:
    with contextlib.suppress(OSError):
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    return False


# ----- stale temporaries -----------------------------------------------------------------------------


def _writer_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition("-")
    if host != _HOST or not pid.isdigit():
        return True  # another machine's (or not ours): leave it alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale_temporaries(target: Path) -> Iterator[tuple[Path, str]]:
    """(path, suffix) of the temporaries beside ``target`` whose writer is dead."""
    prefix = _temp_prefix(target)
    with contextlib.suppress(OSError):
        for entry in os.scandir(target.parent):
            name = entry.name
            if not name.startswith(prefix):
                continue
            suffix = _TEMP_SUFFIX if name.endswith(_TEMP_SUFFIX) else _OLD_SUFFIX if name.endswith(_OLD_SUFFIX) else ""
            parts = name[len(prefix):].split(".")
            if suffix and len(parts) == 3 and not _writer_alive(parts[0]):
                yield Path(entry.path), suffix


_LEGACY_TEMP = re.compile(r"^\..+\.tmp-(\d+)$")  # `.NAME.tmp-PID`: directories older versions staged in


def clean_stale_in(directory: str | os.PathLike[str]) -> None:
    """Remove every temporary in ``directory`` whose writer is dead, whatever it was to become: what a
    process killed mid-write leaves beside outputs that a resumed run may never write again."""
    folder = Path(directory)
    with contextlib.suppress(OSError):
        names = [entry.name for entry in os.scandir(folder) if entry.name.startswith(".")]
        for name in names:
            legacy = _LEGACY_TEMP.match(name)
            if legacy and not _writer_alive(f"{_HOST}-{legacy.group(1)}"):
                _remove(folder / name)
            elif name.endswith((_TEMP_SUFFIX, _OLD_SUFFIX)):
                parts = name[1:].rsplit(".", 3)  # NAME . OWNER . RANDOM . tmp|old
                if len(parts) == 4 and not _writer_alive(parts[1]):
                    clean_stale(folder / parts[0])


def clean_stale(target: str | os.PathLike[str]) -> None:
    """Remove temporaries of ``target`` left by dead writers; put back an old directory that a crash
    left aside mid-swap (only where the platform cannot swap in one step)."""
    path = Path(target)
    for stale, suffix in _stale_temporaries(path):
        if suffix == _OLD_SUFFIX and not path.exists():
            with contextlib.suppress(OSError):
                os.rename(stale, path)
                continue
        _remove(stale)


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


# ----- single files ----------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it.

    A full disk while writing becomes a :class:`StorageError` naming ``path``.
    """
    target = Path(path)
    made = make_parent(target)
    if target.is_dir():
        raise StorageError(f"{target} is a directory, and the output is a file", where=str(target),
                           fix=f"pass a file path, e.g. {target / 'out'}{target.suffix or ''}")
    clean_stale(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f"{_temp_prefix(target)}{_owner()}.", suffix=_TEMP_SUFFIX,
                                        dir=target.parent)
    except OSError as error:
        remove_made(made)
        raise storage_error(error, target) from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # Set the mode last: some writers (safetensors) replace the file, and mkstemp makes it 0600.
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)
    except BaseException as error:
        _remove(tmp)
        remove_made(made)  # a failed write leaves no folders of its own behind either
        if isinstance(error, OSError) and not isinstance(error, SidkitError) and _about_space(error):
            raise storage_error(error, target) from None
        raise


def _about_space(error: BaseException) -> bool:
    from sidkit.errors import os_errno

    return os_errno(error) in (*_NO_SPACE, errno.EROFS)


def make_parent(target: Path) -> list[Path]:
    """Create the missing folders above ``target``; returns those it created, deepest first."""
    missing = []
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        remove_made(missing)
        raise storage_error(error, target.parent) from None
    return missing


def remove_made(folders: list[Path]) -> None:
    """Remove the folders a failed write created (deepest first), as long as they are empty."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` as UTF-8, atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def json_safe(value: Any) -> Any:
    """NaN and inf become None (JSON has no such numbers); numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | os.PathLike[str], data: Any) -> None:
    """Write ``data`` as indented, strictly valid JSON (see :func:`json_safe`), atomically."""
    text = json.dumps(json_safe(data), indent=2, sort_keys=False, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n", encoding="utf-8")


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Save one array as ``.npy``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)


def reserve_space(path: str | os.PathLike[str]) -> None:
    """Allocate the blocks of the file ``path`` up to its length, so that writes through a memory map
    cannot meet a full disk (which kills the process with SIGBUS); StorageError when the space is not there."""
    target = Path(path)
    with open(target, "r+b") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size == 0 or not hasattr(os, "posix_fallocate"):
            return
        try:
            os.posix_fallocate(handle.fileno(), 0, size)
        except OSError as error:
            if error.errno in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                return  # the file system cannot reserve; writes will tell
            raise storage_error(error, target) from None


# ----- whole directories -----------------------------------------------------------------------------


def is_empty_dir(path: Path) -> bool:
    return path.is_dir() and next(path.iterdir(), None) is None


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replaceable: Callable[[Path], bool] | None = None,
               what: str = "output directory", fix: str | None = None, keep_existing: bool = False,
               resumable: bool = False) -> Iterator[Path]:
    """Build the directory ``path`` as a whole: yield a temporary directory beside it; when the block
    ends without error it takes the place of ``path`` in one step (an old ``path`` goes); on error it
    is deleted and ``path`` is left as it was.

    Use it for every output that is a directory (see the module docstring)::

        with atomic_dir(out, replaceable=lambda d: (d / "metrics.json").is_file(), what="compare run") as tmp:
            write_json(tmp / "metrics.json", ...)   # write everything under tmp, never under out

    Args:
        path: the directory to write.
        replaceable: whether an existing, non-empty ``path`` may be replaced (e.g. it holds a model
            written earlier); an empty one always may. None: any directory may.
        what: what the directory is, for error messages ("model directory").
        fix: the Fix: of the error when ``path`` may not be replaced.
        keep_existing: start from (hard links to) the files ``path`` holds now, to change a few of
            them; replace those files (:func:`atomic_path`, ``write_json``...), never write into them.
        resumable: the temporary directory is :func:`staging_dir` (a fixed name); it survives a
            failure or a crash, and the next run into ``path`` gets it back with what it held, to
            carry on from there. Two live writers of one ``path`` are refused.

    Raises:
        StorageError: ``path`` is a file, may not be replaced, is being written by another live
            process (``resumable``), or cannot be written.
    """
    target = Path(path)
    check_output_path(target, directory=True)
    if replaceable is not None and target.is_dir() and not is_empty_dir(target) and not replaceable(target):
        raise StorageError(f"{target} exists and is not a {what} that sidkit wrote, so it is not replaced",
                           where=str(target), fix=fix or "pass a new or empty directory, or remove this one")
    made = make_parent(target)
    clean_stale(target)
    try:
        tmp = _claim_staging(target) if resumable else Path(tempfile.mkdtemp(
            prefix=f"{_temp_prefix(target)}{_owner()}.", suffix=_TEMP_SUFFIX, dir=target.parent))
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
        if keep_existing and target.is_dir():
            _link_tree(target, tmp)
    except OSError as error:
        remove_made(made)
        raise storage_error(error, target) from None
    try:
        yield tmp
        if resumable:
            (tmp / _OWNER_FILE).unlink(missing_ok=True)
        _swap_in(tmp, target)
    except BaseException as error:
        if resumable:
            (tmp / _OWNER_FILE).unlink(missing_ok=True)  # what was finished stays for the next run
            _remove_if_empty(tmp)  # and nothing stays where nothing was finished
        else:
            _remove(tmp)
        remove_made(made)
        if isinstance(error, OSError) and not isinstance(error, SidkitError) and _about_space(error):
            raise storage_error(error, target) from None
        raise


_STAGING_SUFFIX = ".partial"
_OWNER_FILE = ".writer"


def staging_dir(path: str | os.PathLike[str]) -> Path:
    """Where a ``resumable`` :func:`atomic_dir` builds ``path``: ``.NAME.partial`` beside it. After a
    crash it holds what the run had finished."""
    target = Path(path)
    return target.with_name(f"{_temp_prefix(target)}{_STAGING_SUFFIX.lstrip('.')}")


def _claim_staging(target: Path) -> Path:
    staging = staging_dir(target)
    staging.mkdir(exist_ok=True)
    owner_file = staging / _OWNER_FILE
    try:
        fd = os.open(owner_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        owner = owner_file.read_text(encoding="utf-8").strip()
        if _writer_alive(owner):
            raise StorageError(f"another process ({owner}) is writing {target}", where=str(target),
                               fix="wait for it to finish, or write to another directory") from None
        owner_file.write_text(_owner(), encoding="utf-8")  # a dead writer's: take it over
        return staging
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(_owner())
    except BaseException:
        owner_file.unlink(missing_ok=True)  # e.g. a full disk: leave nothing behind
        _remove_if_empty(staging)
        raise
    return staging


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()  # fails, as it should, when it holds anything


def _link_tree(source: Path, destination: Path) -> None:
    """Hard links (copies where links are impossible) of every file under ``source`` into ``destination``."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, destination, copy_function=link, dirs_exist_ok=True, symlinks=True)


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the finished directory ``tmp`` at ``target``: a rename when nothing (or an empty directory)
    is there, else an atomic exchange, then the old one is deleted."""
    try:
        os.rename(tmp, target)  # replaces an empty directory too
        return
    except OSError as error:
        if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            raise
    if exchange_paths(tmp, target):
        _remove(tmp)  # tmp now holds the old directory
        return
    # No atomic exchange here: set the old one aside first; a crash in between is undone by clean_stale.
    old = Path(tempfile.mkdtemp(prefix=f"{_temp_prefix(target)}{_owner()}.", suffix=_OLD_SUFFIX, dir=target.parent))
    os.rename(target, old)  # renaming onto the empty directory mkdtemp made replaces it
    os.rename(tmp, target)
    _remove(old)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the platform or the file system cannot."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _renameat2() -> Any:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function
