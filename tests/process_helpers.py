"""Helpers for tests of processes: running a command as its own process group, and jobs for the
worker pool's tests. Light (no TensorFlow): spawned workers import it, so a pool starts in a
fraction of a second."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def process_group(command: list[str], **options) -> Iterator[subprocess.Popen]:
    """Runs COMMAND as a new process group, as a terminal runs a job (its workers join the
    group); whatever of the group is left when the block ends is killed."""
    process = subprocess.Popen(command, start_new_session=True, **options)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


def wait_until_group_ends(process: subprocess.Popen, seconds: float, message: str) -> None:
    """Waits until no process of PROCESS's group is left (its workers included)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        assert time.monotonic() < deadline, message
        time.sleep(0.1)


def square(job: int) -> int:
    return job * job


def squares() -> object:
    """A worker setup: every job is squared."""
    return square


def exiting(code: int) -> None:
    """A worker setup that ends its process before the worker is ready."""
    os._exit(code)


def raising() -> None:
    """A worker setup that fails."""
    raise ValueError("no model here")


def crashing(marks: str, always: tuple[int, ...], once: tuple[int, ...], fails: tuple[int, ...]):
    """A worker setup: its process dies (SIGKILL, as the out-of-memory killer sends) on the jobs
    in `always`, and on those in `once` the first time (a file in `marks` remembers); jobs in
    `fails` raise ValueError; the others are squared."""
    return functools.partial(_crash_or_square, Path(marks), always, once, fails)


def _crash_or_square(marks: Path, always, once, fails, job: int) -> int:
    mark = marks / f"crashed-{job}"
    if job in always or (job in once and not mark.exists()):
        mark.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if job in fails:
        raise ValueError(f"job {job} is bad")
    return square(job)


def sleeping(marks: str):
    """A worker setup whose jobs leave a file named after their process in `marks`, then take
    a minute."""
    return functools.partial(_mark_and_sleep, Path(marks))


def _mark_and_sleep(marks: Path, job: int) -> None:
    (marks / f"working-{os.getpid()}").touch()
    time.sleep(60)
