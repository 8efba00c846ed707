"""A pool of worker processes that survives its workers' deaths and stops with its parent.

`WorkerPool` runs jobs in spawned processes (fresh interpreters: no copy of the parent's
TensorFlow state or threads). Each worker calls `setup` once (to build what every job needs, such
as a compiled graph) and then the function it returned on one job at a time; only jobs and
results travel between processes, and at most `ahead` jobs per worker are handed out at a time,
so memory does not grow with the number of jobs.

Why not `concurrent.futures.ProcessPoolExecutor`: when one of its workers dies (a decoder
crashing on a damaged file, the out-of-memory killer), every pending future fails with
`BrokenProcessPool` and the executor is unusable, with no way to tell which job killed it; and
after its parent is killed (kill -9) its workers wait on their queue forever, as orphans. Here
each worker has a pipe of its own, which it writes synchronously: the parent gets all that a
worker answered even if it dies the next instant, knows which job it was running, replaces it and
hands that job to `on_crash`, which retries or settles it; and a worker whose parent is gone sees
its pipe close and exits once the job in hand is done.

Ctrl-C: workers start with SIGINT blocked and then ignore it, so a Ctrl-C in the terminal (which
signals the whole process group) interrupts only the parent, which terminates the workers and
reaps them; no worker prints a traceback, and none is left behind.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.resource_tracker
import os
import pickle
import signal
import traceback
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

JOBS_AHEAD_PER_WORKER = 2  # one running, one waiting in its pipe: no idle gap between jobs
_STOP_SECONDS = 2.0


class WorkerError(RuntimeError):
    """A worker's `setup` (then `job` is None) or a job raised; `error` is the exception (or a
    RuntimeError with its text when it could not be pickled), `trace` the worker's traceback."""

    def __init__(self, error: BaseException, trace: str, job: Any = None):
        super().__init__(f"{type(error).__name__}: {error}")
        self.error, self.trace, self.job = error, trace, job


class WorkerStartError(RuntimeError):
    """A worker exited before its `setup` finished, without reporting an error (it was killed,
    or the spawned interpreter failed while importing the main script)."""

    def __init__(self, exit_code: int | None):
        super().__init__(f"a worker process exited (code {exit_code}) before it started")
        self.exit_code = exit_code


def in_worker(name: str) -> bool:
    """Whether this process is a worker of a pool called `name`."""
    return multiprocessing.current_process().name.startswith(f"{name}-")


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@dataclass
class _Worker:
    """One worker process, the parent's end of its pipe, and the numbers of the jobs sent to it
    and not answered yet: it runs them in order, so the first is the one it is running."""

    process: Any
    pipe: Any
    ready: bool = False
    assigned: deque[int] = field(default_factory=deque)


class WorkerPool:
    """`count` spawned workers running `setup()(job)` for each job; use as a context manager.

    `setup` and the jobs must be picklable (a module-level function, or a `functools.partial` of
    one). Each worker has its own pipe, written synchronously, so what a worker has answered
    reaches the parent even if it dies the next instant, and the parent knows which job a dead
    worker was running. Leaving the `with` block normally lets idle workers exit; leaving it on
    an error or Ctrl-C terminates them at once, so a job's output must be written atomically (a
    killed job leaves no partial result).
    """

    def __init__(
        self,
        count: int,
        setup: Callable[[], Callable[[Any], Any]],
        name: str,
        ahead: int = JOBS_AHEAD_PER_WORKER,
    ):
        if count < 1 or ahead < 1:
            raise ValueError(
                f"a pool needs at least one worker and one job ahead, not {count}, {ahead}"
            )
        self._context = multiprocessing.get_context("spawn")
        self._setup, self._name, self._ahead = setup, name, ahead
        self._workers: list[_Worker] = []
        try:
            for slot in range(count):
                self._workers.append(self._start(slot))
        except BaseException:
            self.close(wait=False)
            raise

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self.close(wait=exc_type is None)

    @property
    def processes(self) -> list:
        """The current worker processes."""
        return [worker.process for worker in self._workers]

    def _start(self, slot: int) -> _Worker:
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main,
            args=(theirs, self._setup),
            name=f"{self._name}-{slot}",
            daemon=True,
        )
        with _sigint_blocked():  # inherited: a Ctrl-C while the worker starts cannot reach it
            process.start()
        theirs.close()  # the worker holds the only copy: its end closes when it dies
        return _Worker(process, ours)

    def run(
        self, jobs: Sequence, on_crash: Callable[[Any, int | None, int], Any]
    ) -> Iterator[tuple[Any, Any]]:
        """Yields (job, result) for every job, in the order they finish.

        When a worker dies while running a job, the worker is replaced and `on_crash(job,
        exit_code, attempts)` (attempts: how many times a worker has died on that job) returns
        the job's result, or None to run the job again in a new worker. Jobs that were waiting
        for the dead worker go to others, with no attempt counted.

        Raises:
            WorkerError: a job or a worker's setup raised.
            WorkerStartError: a worker died before its setup finished.
        """
        waiting = deque(range(len(jobs)))  # job numbers not handed out, next first
        attempts: Counter[int] = Counter()
        while waiting or any(worker.assigned for worker in self._workers):
            self._hand_out(jobs, waiting)
            multiprocessing.connection.wait(
                [w.pipe for w in self._workers] + [w.process.sentinel for w in self._workers]
            )
            for slot, worker in enumerate(self._workers):
                dead = not worker.process.is_alive()  # first: then all it sent is in the pipe
                for kind, payload, trace in _received(worker.pipe):
                    if kind == "ready":
                        worker.ready = True
                    elif kind == "failed":
                        job = jobs[worker.assigned[0]] if worker.ready else None
                        raise WorkerError(payload, trace, job)
                    else:
                        yield jobs[worker.assigned.popleft()], payload
                if dead:
                    yield from self._replace(slot, jobs, waiting, attempts, on_crash)

    def _hand_out(self, jobs: Sequence, waiting: deque[int]) -> None:
        """Sends waiting jobs to the ready workers, up to `ahead` each."""
        for worker in self._workers:
            while worker.ready and waiting and len(worker.assigned) < self._ahead:
                number = waiting.popleft()
                try:
                    worker.pipe.send(jobs[number])
                except OSError:  # it has just died: the next wait() tells
                    waiting.appendleft(number)
                    break
                worker.assigned.append(number)

    def _replace(self, slot, jobs, waiting, attempts, on_crash) -> Iterator[tuple[Any, Any]]:
        """Starts a new worker in the dead one's place; settles the job it was running (or puts
        it back in line), and puts back the jobs that were waiting for it."""
        dead = self._workers[slot]
        if not dead.ready:
            raise WorkerStartError(dead.process.exitcode)
        dead.pipe.close()
        self._workers[slot] = self._start(slot)
        if not dead.assigned:
            return
        number, *queued = dead.assigned
        waiting.extendleft(reversed(queued))
        attempts[number] += 1
        result = on_crash(jobs[number], dead.process.exitcode, attempts[number])
        if result is None:
            waiting.appendleft(number)
        else:
            yield jobs[number], result

    def close(self, wait: bool = True) -> None:
        """Stops the workers and reaps them: with `wait`, idle ones exit on their own and busy
        ones are terminated after a short wait; without, all are terminated at once."""
        if wait:
            for worker in self._workers:
                with contextlib.suppress(OSError):  # one that has died cannot be told
                    worker.pipe.send(None)
        for worker in self._workers:
            process = worker.process
            if wait:
                process.join(timeout=_STOP_SECONDS)
            if process.is_alive():
                process.terminate()
                process.join(timeout=_STOP_SECONDS)
            if process.is_alive():
                process.kill()
                process.join()
            worker.pipe.close()


def _received(pipe) -> Iterator[tuple[str, Any, str]]:
    """The messages waiting in a worker's pipe; none more once the worker has gone."""
    while pipe.poll():
        try:
            yield pipe.recv()
        except (EOFError, OSError):  # the worker has gone (a message it was writing is cut off)
            return


@contextlib.contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Blocks SIGINT in this thread for the block; a process started meanwhile inherits the
    block through fork and exec. A Ctrl-C that comes meanwhile is delivered after the block."""
    if not hasattr(signal, "pthread_sigmask"):  # not on POSIX
        yield
        return
    # Started first: a spawning start starts multiprocessing's resource tracker if it is not
    # running, and unblocks SIGINT when it has (CPython bpo-33613), which would expose the worker.
    multiprocessing.resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _worker_main(pipe, setup) -> None:
    """A worker process: runs `setup`, then the jobs it receives until it gets None. It exits
    quietly when its parent has gone (killed): nobody is waiting for its work."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    with contextlib.suppress(EOFError, OSError):  # the parent's end of the pipe is closed
        try:
            work = setup()
        except BaseException as error:
            pipe.send(("failed", _portable(error), traceback.format_exc()))
            return
        pipe.send(("ready", None, ""))
        while (job := pipe.recv()) is not None:
            try:
                result = work(job)
            except BaseException as error:
                pipe.send(("failed", _portable(error), traceback.format_exc()))
                return
            pipe.send(("done", result, ""))


def _portable(error: BaseException) -> BaseException:
    """The exception if it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(error))
        return error
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
