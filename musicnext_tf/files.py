"""Crash-safe file writing: everything we write appears whole or not at all."""

from __future__ import annotations

import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np


def atomic_write(path: str | os.PathLike, data: bytes) -> None:
    """Writes `data` to a temporary file beside `path`, flushes it to disk, then renames it into
    place, so that readers (and a rerun after a crash or kill -9) never see a partial file."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike, values) -> None:
    """Writes indented, key-sorted JSON atomically."""
    atomic_write(path, (json.dumps(values, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Writes a `.npy` file atomically."""
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write(path, buffer.getvalue())
