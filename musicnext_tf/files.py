"""Crash-safe file writing: everything we write appears whole or not at all.

Temporary files and folders (`tempfile.mkstemp` / `mkdtemp`) are private (0600 / 0700); before
one is renamed into place it gets the mode a plain `open()` or `mkdir()` would have given it
(0644 / 0755 under the usual umask 022), so a model server or a colleague running as another user
can read what we publish.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: read by setting, and put it back at once
    os.umask(mask)
    return mask


def public_mode(directory: bool = False) -> int:
    """The mode `open()` (0666) or `mkdir()` (0777) gives under the current umask."""
    return (0o777 if directory else 0o666) & ~current_umask()


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike, prefix: str = ".tmp-", suffix: str | None = None
) -> Iterator[io.BufferedWriter]:
    """Yields a binary file to write; when the block ends without error the file is flushed to
    disk, given the mode of a normal write and renamed to `path` in one step, so that readers (and
    a rerun after a crash or kill -9) never see a partial file. On error it is removed. The
    temporary file is `prefix...suffix` beside `path` (suffix defaults to `path`'s)."""
    path = Path(path)
    suffix = path.suffix if suffix is None else suffix
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=prefix, suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fchmod(file.fileno(), public_mode())
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to `path` atomically, with the mode of a normal write (see `atomic_file`)."""
    with atomic_file(path) as file:
        file.write(data)


def write_json(path: str | os.PathLike, values) -> None:
    """Writes indented, key-sorted JSON atomically."""
    atomic_write(path, (json.dumps(values, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def write_csv(path: str | os.PathLike, columns, rows) -> None:
    """Writes dict rows as CSV with the given columns (missing values empty), atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buffer.getvalue().encode("utf-8"))


def write_npy(path: str | os.PathLike, array) -> None:
    """Writes a `.npy` file atomically."""
    buffer = io.BytesIO()
    import numpy as np  # here: the command line imports this module and must start fast

    np.save(buffer, array)
    atomic_write(path, buffer.getvalue())


def _fsync(path: Path) -> None:
    """Flushes a file's (or a folder's entries') data to disk."""
    handle = os.open(path, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def sync_tree(folder: str | os.PathLike, recursive: bool = True) -> None:
    """Flushes the folder's entries, and with `recursive` every file and subfolder below it, to
    disk, so that a rename that publishes the folder is never followed by missing data."""
    folder = Path(folder)
    if recursive:
        for path in folder.rglob("*"):
            if path.is_file() or path.is_dir():
                _fsync(path)
    _fsync(folder)


def staging_directory(parent: str | os.PathLike, prefix: str) -> Path:
    """A new empty folder in `parent` (named `prefix` + a random part) with the mode of a normal
    `mkdir`, to be filled and then renamed into place."""
    folder = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    folder.chmod(public_mode(directory=True))
    return folder


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary folder beside `path` to fill; when the block ends without error,
    its files are flushed to disk and the folder is renamed to `path` in one step, so that `path`
    exists complete or not at all (a kill -9 leaves only a `.tmp-*` folder to delete). On error the
    temporary folder is removed. `path` must not exist yet."""
    path = Path(path)
    temporary = staging_directory(path.parent, ".tmp-")
    try:
        yield temporary
        sync_tree(temporary)
        os.rename(temporary, path)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def link_or_copy(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Makes `target` a hard link to `source` (a copy where links are not supported), replacing
    `target` atomically. Hard links cost no space and survive the deletion of `source`."""
    source, target = Path(source), Path(target)
    if target.exists() and os.path.samefile(source, target):
        return
    temporary = target.parent / f".tmp-{uuid.uuid4().hex}{target.suffix}"
    try:
        try:
            os.link(source, temporary)
        except OSError:
            shutil.copy2(source, temporary)
            _fsync(temporary)
        os.replace(temporary, target)
    finally:
        # also when `target` became a link to the same file meanwhile: rename then does nothing
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def exclusive_lock(
    path: str | os.PathLike, on_busy: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Holds an exclusive advisory lock (`flock`) on the file `path` for the block; the system
    releases it however the process ends, kill -9 included. The holder's pid is written into the
    file. When another process holds it, `on_busy(pid_of_holder)` is called first: it may raise
    to refuse, or return to wait for the lock. No lock where `fcntl` does not exist (Windows)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    with Path(path).open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            if on_busy is not None:
                on_busy(holder)
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
