"""The crash-safe worker pool: results, a worker's death, failures, Ctrl-C and no process left.

The workers run the light jobs of `process_helpers` (no TensorFlow), so each pool starts in well
under a second.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import process_helpers as jobs
import pytest
from process_helpers import process_group

from musicnext_tf.workers import WorkerError, WorkerPool, WorkerStartError, in_worker


def _never_crashes(job, exit_code, attempts):
    raise AssertionError(f"job {job}: a worker died (exit code {exit_code})")


def test_every_job_gives_its_result_and_idle_workers_are_reaped():
    with WorkerPool(2, jobs.squares, "test-pool", ahead=1) as pool:
        results = dict(pool.run(list(range(7)), _never_crashes))
        processes = list(pool.processes)
    assert results == {job: job * job for job in range(7)}
    assert not any(process.is_alive() for process in processes)
    assert all(process.exitcode == 0 for process in processes)  # stopped gently, not killed
    assert not in_worker("test-pool")


def test_a_dead_worker_is_replaced_and_only_its_job_is_settled(tmp_path):
    """Job 2 kills its worker every time, job 4 the first time only: on_crash sees each death
    with the job and the attempt, retries (None) once, then settles; the others are unaffected."""
    setup = functools.partial(jobs.crashing, str(tmp_path), (2,), (4,), ())
    crashes = []

    def on_crash(job, exit_code, attempts):
        crashes.append((job, exit_code, attempts))
        return None if attempts < 2 else "crashed"

    with WorkerPool(2, setup, "test-pool") as pool:
        results = dict(pool.run(list(range(6)), on_crash))
    assert results == {0: 0, 1: 1, 2: "crashed", 3: 9, 4: 16, 5: 25}
    kill = -signal.SIGKILL
    assert sorted(crashes) == [(2, kill, 1), (2, kill, 2), (4, kill, 1)]


def test_a_failing_job_raises_with_the_job_and_the_workers_traceback(tmp_path):
    setup = functools.partial(jobs.crashing, str(tmp_path), (), (), (3,))
    with pytest.raises(WorkerError) as caught:
        with WorkerPool(2, setup, "test-pool") as pool:
            list(pool.run(list(range(6)), _never_crashes))
    assert caught.value.job == 3
    assert isinstance(caught.value.error, ValueError) and "job 3 is bad" in str(caught.value)
    assert "_crash_or_square" in caught.value.trace


def test_a_worker_that_cannot_start_is_an_error_not_a_retry():
    with pytest.raises(WorkerError, match="no model here") as caught:
        with WorkerPool(1, jobs.raising, "test-pool") as pool:
            list(pool.run([1], _never_crashes))
    assert caught.value.job is None
    with pytest.raises(ValueError, match="at least one worker"):
        WorkerPool(0, jobs.squares, "test-pool")
    with pytest.raises(WorkerStartError, match=r"code 3\) before it started"):
        with WorkerPool(1, functools.partial(jobs.exiting, 3), "test-pool") as pool:
            list(pool.run([1], _never_crashes))


CTRL_C_SCRIPT = """
import functools, os, sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
import process_helpers as jobs
from musicnext_tf.workers import WorkerPool

marks = Path({marks!r})
if __name__ == "__mp_main__" and {while_starting!r}:  # a worker importing this script, slowly
    import signal                                     # (as when it imports TensorFlow)
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    ignored = signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    (marks / f"starting-{{os.getpid()}}-{{blocked or ignored}}").touch()
    time.sleep(60)

if __name__ == "__main__":
    try:
        with WorkerPool(2, functools.partial(jobs.sleeping, str(marks)), "test-pool") as pool:
            pids = [process.pid for process in pool.processes]
            list(pool.run(list(range(4)), None))
    except KeyboardInterrupt:
        left = []
        for pid in pids:  # a worker not reaped is still our child (a zombie if it ended)
            try:
                os.waitpid(pid, os.WNOHANG)
                left.append(pid)
            except ChildProcessError:
                pass
        print("interrupted; workers left:", left, flush=True)
        sys.exit(130)
"""


@pytest.mark.parametrize("while_starting", [True, False], ids=["starting", "working"])
def test_ctrl_c_stops_the_workers_without_a_traceback_and_leaves_no_process(
    tmp_path, while_starting
):
    """Ctrl-C signals the terminal's whole process group: while the workers start (importing) or
    while they work, only the parent is interrupted; it reaps its workers, and no worker prints a
    traceback."""
    marks = tmp_path / "marks"
    marks.mkdir()
    script = tmp_path / "pool.py"
    tests = str(Path(__file__).parent)
    script.write_text(
        CTRL_C_SCRIPT.format(tests=tests, marks=str(marks), while_starting=while_starting)
    )
    command = [sys.executable, str(script)]
    with process_group(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        deadline = time.monotonic() + 60
        while len(list(marks.iterdir())) < 2:
            assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
            time.sleep(0.05)
        if while_starting:  # what a Ctrl-C would do to a starting worker, told by the worker
            assert sorted(mark.name.split("-")[-1] for mark in marks.iterdir()) == ["True"] * 2
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C
        out, err = process.communicate(timeout=30)
        assert process.returncode == 130, err
        # the workers were reaped before the parent exited: none is running, none a zombie
        assert "interrupted; workers left: []" in out
        assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
