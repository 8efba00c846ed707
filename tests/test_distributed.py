"""Distributed training: strategies, the global batch cut per replica, and two real worker processes
on 127.0.0.1 (CPU) that train, stop, resume together and end as a single process would.

Tolerance of the comparison with the single process: the workers sum the same per-example losses in
another order (two parts of each batch, then an all-reduce), so their weights differ from the
single process's by float32 round-off only: after this run's 16 steps the largest difference
measured here was 1.5e-7 (weights up to 0.57); the test allows 1e-5. A lost, repeated or wrongly
weighted step moves the weights by about the learning rate (3e-3), and the step counters (Adam's
iterations, the L-softmax annealing step) are compared exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import tensorflow as tf
from distributed_worker import STOPPED_EXIT_CODE, run_config
from helpers import write_timbre_dataset

from musicnext_tf import cli, datasets, distributed, train
from musicnext_tf.config import ConfigError, resolve
from musicnext_tf.pipeline import training_dataset
from musicnext_tf.prepare import prepare

REPOSITORY = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")
LAUNCH_SECONDS = 150  # bound on one launch of both workers; one takes about 20 s here


# -- the global batch, cut per replica ---------------------------------------------------------


@pytest.mark.parametrize("replicas", [1, 2, 3, 4])
def test_replica_parts_cover_every_batch_once_in_order_and_differ_by_at_most_one(replicas):
    for rows in range(0, 13):
        parts = [distributed.replica_rows(rows, r, replicas) for r in range(replicas)]
        assert parts[0][0] == 0 and parts[-1][1] == rows
        assert all(stop == next_start for (_, stop), (next_start, _) in zip(parts, parts[1:]))
        sizes = [stop - start for start, stop in parts]
        assert max(sizes) - min(sizes) <= 1


def test_an_empty_replica_part_is_one_row_of_weight_zero():
    x = {"segments": tf.reshape(tf.range(6.0), [3, 2]), "labels": tf.constant([0, 1, 2])}
    y = tf.constant([0, 1, 2])
    (part_x, part_y, weights) = distributed.replica_part(x, y, 1, 2)  # rows 1 and 2 of 3
    np.testing.assert_array_equal(part_y, [1, 2])
    np.testing.assert_array_equal(part_x["segments"], [[2.0, 3.0], [4.0, 5.0]])
    np.testing.assert_array_equal(weights, [1.0, 1.0])
    single = (tf.constant([[7.0]]), tf.constant([2]))
    for replica, expected_weight in ((0, 0.0), (1, 1.0)):  # 1 row over 2 replicas: 0 and 1 rows
        part_x, part_y, weights = distributed.replica_part(*single, replica, 2)
        assert part_y.numpy().tolist() == [2] and weights.numpy().tolist() == [expected_weight]


# -- strategies and TF_CONFIG ------------------------------------------------------------------


def tf_config(task_type: str, index: int, chief: int = 0, workers: int = 2) -> str:
    cluster = {"worker": [f"127.0.0.1:{1000 + i}" for i in range(workers)]}
    if chief:
        cluster["chief"] = ["127.0.0.1:999"]
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


def test_the_chief_is_task_chief_or_else_worker_0():
    assert distributed.cluster_role(tf_config("worker", 0)) == distributed.WorkerRole(0, 2, True)
    assert distributed.cluster_role(tf_config("worker", 1)) == distributed.WorkerRole(1, 2, False)
    with_chief = distributed.cluster_role(tf_config("chief", 0, chief=1))
    assert with_chief == distributed.WorkerRole(0, 3, True)
    assert distributed.cluster_role(tf_config("worker", 0, chief=1)).is_chief is False


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{not json", "TF_CONFIG is not usable"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "TF_CONFIG is not usable"),
        (tf_config("worker", 2), "is not a chief or worker of the cluster"),
        (tf_config("evaluator", 0), "is not a chief or worker of the cluster"),
    ],
)
def test_an_unusable_tf_config_is_a_config_error_that_shows_an_example(text, message):
    with pytest.raises(ConfigError, match=message) as error:
        distributed.cluster_role(text)
    assert 'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345"' in str(error.value)


def test_the_strategy_is_a_train_setting_and_a_fit_option(tmp_path):
    assert resolve("demo").train.strategy == "default"
    with pytest.raises(ConfigError, match=r"\[train\] strategy = 'ring' is not one of"):
        resolve("demo", None, {"train": {"strategy": "ring"}})
    options = ["--strategy", "mirrored", "--data-service", "grpc://dispatcher:5050"]
    args = cli.build_parser().parse_args(["fit", "--data", "demo", *options])
    overrides = cli._fit_overrides(args)["train"]
    assert (overrides["strategy"], overrides["data_service"]) == (
        "mirrored",
        "grpc://dispatcher:5050",
    )


# -- two worker processes ----------------------------------------------------------------------


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_arguments(workspace: Path, run_dir: Path, weights: Path, *options: str) -> list[str]:
    """The arguments of `distributed_worker.py` for the module's dataset and feature cache."""
    data, cache = workspace / "data", workspace / "cache"
    return [str(data), str(cache), str(run_dir), str(weights), *options]


def launch(
    arguments: list[list[str]],
    logs: Path,
    environments: list[dict],
    expected_codes: tuple[int, ...] = (0, STOPPED_EXIT_CODE),
) -> list[int]:
    """Runs one `distributed_worker.py` per argument list, all at once, and returns their exit
    codes. Every process is killed (with its process group) if the launch outlives
    `LAUNCH_SECONDS` or the test fails; an unexpected exit code fails the test with the logs."""
    processes, log_paths = [], []
    try:
        for index, (process_arguments, variables) in enumerate(zip(arguments, environments)):
            environment = dict(
                os.environ,
                PYTHONPATH=os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")]),
                PYTHONUNBUFFERED="1",
                TF_CPP_MIN_LOG_LEVEL="2",
                **variables,
            )
            log_paths.append(logs / f"process-{index}-{time.monotonic_ns()}.log")
            with log_paths[-1].open("w") as log:
                processes.append(
                    subprocess.Popen(
                        [sys.executable, str(WORKER), *process_arguments],
                        env=environment,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # its own process group, killed as one
                    )
                )
        deadline = time.monotonic() + LAUNCH_SECONDS
        for process in processes:
            try:
                process.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"the processes ran over {LAUNCH_SECONDS} s\n{log_tails(log_paths)}")
        codes = [process.returncode for process in processes]
        if any(code not in expected_codes for code in codes):
            pytest.fail(f"a process failed (exit codes {codes})\n{log_tails(log_paths)}")
        return codes
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def launch_workers(arguments: list[list[str]], logs: Path, **options) -> list[int]:
    """`launch` as the workers of one cluster on 127.0.0.1 (TF_CONFIG with free ports)."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(len(arguments))]}
    environments = [
        {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})}
        for i in range(len(arguments))
    ]
    return launch(arguments, logs, environments, **options)


def log_tails(paths: list[Path]) -> str:
    return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in paths)


def trainer_arrays(run_dir: Path, epoch: int) -> dict[str, np.ndarray]:
    """Every array of a checkpoint's `trainer.weights.h5`: weights, Adam moments and counters."""
    arrays = {}
    with h5py.File(run_dir / "checkpoints" / f"epoch-{epoch:04d}" / "trainer.weights.h5") as file:
        file.visititems(
            lambda name, item: (
                arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


def assert_same_training(arrays: dict, expected: dict, tolerance: float) -> None:
    assert arrays.keys() == expected.keys()
    for name, array in expected.items():
        if np.issubdtype(array.dtype, np.integer):  # step counters: exact
            np.testing.assert_array_equal(arrays[name], array, err_msg=name)
        else:
            np.testing.assert_allclose(arrays[name], array, rtol=0, atol=tolerance, err_msg=name)


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in folder.rglob("*")
        if p.is_file()
    }


def history_rows(run_dir: Path) -> list[dict[str, str]]:
    lines = (run_dir / "history.csv").read_text().splitlines()
    return [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("distributed")
    write_timbre_dataset(root / "data", clips_per_class=6)
    return root


@pytest.fixture(scope="module")
def single_process_run(workspace) -> Path:
    """The same run in this process with the default strategy (it also fills the feature cache
    the workers then share)."""
    run_dir = workspace / "single"
    config = run_config(workspace / "data", workspace / "cache", "default")
    train.fit(config, run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="module")
def data_service():
    """A tf.data service on 127.0.0.1 in this process: a dispatcher and one worker."""
    service = tf.data.experimental.service
    dispatcher = service.DispatchServer(service.DispatcherConfig(port=0))
    worker = service.WorkerServer(service.WorkerConfig(dispatcher.target.split("://")[1]))
    yield dispatcher.target
    del worker, dispatcher


def test_mirrored_on_one_device_fed_by_a_data_service_trains_like_the_default(
    workspace, single_process_run, data_service
):
    run_dir = workspace / "mirrored"
    config = run_config(workspace / "data", workspace / "cache", "mirrored")
    config.train.data_service = data_service
    metrics = train.fit(config, run_dir, progress=False)
    expected = json.loads((single_process_run / "metrics.json").read_text())
    assert metrics["history"]["loss"] == pytest.approx(expected["history"]["loss"], rel=1e-5)
    assert_same_training(
        trainer_arrays(run_dir, 2), trainer_arrays(single_process_run, 2), tolerance=1e-5
    )


def test_a_tf_data_service_produces_the_training_stream_in_order(workspace, data_service):
    config = run_config(workspace / "data", workspace / "cache", "default")
    train_split = prepare(datasets.load_index(config, False), config, progress=False).split("train")
    local = training_dataset(train_split, config.features, config.train, True, initial_epoch=1)
    served = distributed.from_data_service(local, data_service)
    steps = 2 * 8  # two epochs (8 batches each)
    for (x, y), (expected_x, expected_y) in zip(served.take(steps), local.take(steps), strict=True):
        np.testing.assert_array_equal(y, expected_y)
        np.testing.assert_array_equal(x["segments"], expected_x["segments"])


@pytest.mark.slow  # about 15 s: a process of its own, for two logical CPU devices
def test_mirrored_on_two_devices_trains_like_one_device(workspace, single_process_run):
    run_dir, weights = workspace / "mirrored-2", workspace / "mirrored-2.npz"
    options = ("--strategy", "mirrored", "--cpus", "2")
    assert launch([worker_arguments(workspace, run_dir, weights, *options)], workspace, [{}]) == [0]
    assert_same_training(
        trainer_arrays(run_dir, 2), trainer_arrays(single_process_run, 2), tolerance=1e-5
    )


def test_two_workers_stop_resume_and_end_as_one_process(workspace, single_process_run):
    chief_run, worker_run = workspace / "run", workspace / "worker-1-run"

    def both_workers(*options: str) -> list[list[str]]:
        runs = (chief_run, worker_run)
        return [
            worker_arguments(workspace, run, workspace / f"weights-{i}.npz", *options)
            for i, run in enumerate(runs)
        ]

    # 36 training segments in batches of 5: the parts of 2 workers differ in size, and the last
    # batch is 1 segment, so one worker's part of it is empty
    facts = json.loads((single_process_run / "run.json").read_text())
    assert facts["clips"]["train"] * 4 == 36 and facts["steps_per_epoch"] == 8

    # 1: both workers train epoch 1 and stop as epoch 2 begins (a job that dies there)
    codes = launch_workers(both_workers("--stop-at-epoch", "2"), workspace)
    assert codes == [STOPPED_EXIT_CODE, STOPPED_EXIT_CODE]
    assert train.latest_checkpoint(chief_run).epoch == 1
    assert not (chief_run / "metrics.json").exists()
    assert not worker_run.exists()  # the non-chief wrote nothing, not even its RUN_DIR

    # 2: both resume from the chief's checkpoint (worker 1 from a copy of the folder, as on a
    # second host) and end with the same weights as each other and as the single process
    shutil.copytree(chief_run, worker_run, ignore=shutil.ignore_patterns(".lock"))
    before = snapshot(worker_run)
    assert launch_workers(both_workers("--resume"), workspace) == [0, 0]
    assert snapshot(worker_run) == before  # read, never written

    chief_weights, worker_weights = (np.load(workspace / f"weights-{i}.npz") for i in (0, 1))
    assert len(chief_weights.files) == len(worker_weights.files) > 0
    for name in chief_weights.files:
        np.testing.assert_array_equal(chief_weights[name], worker_weights[name], err_msg=name)

    metrics = json.loads((chief_run / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and metrics["sessions"] == 2
    assert [p.name for p in (chief_run / "checkpoints").iterdir()] == ["epoch-0002"]
    rows, expected_rows = history_rows(chief_run), history_rows(single_process_run)
    assert [(row["epoch"], row["session"]) for row in rows] == [("1", "1"), ("2", "2")]
    for row, expected in zip(rows, expected_rows):
        for key in ("loss", "accuracy", "val_loss", "lsoftmax_lambda"):
            assert float(row[key]) == pytest.approx(float(expected[key]), rel=1e-5), key
    assert (chief_run / "logs").is_dir() and (chief_run / "model_best.keras").is_file()
    assert_same_training(
        trainer_arrays(chief_run, 2), trainer_arrays(single_process_run, 2), tolerance=1e-5
    )


def test_workers_that_find_different_checkpoints_stop_with_a_message(workspace, single_process_run):
    chief_run, worker_run = workspace / "unshared-chief", workspace / "unshared-worker"
    shutil.copytree(single_process_run, chief_run)
    (chief_run / "metrics.json").unlink()  # unfinished, after epoch 2
    worker_run.mkdir()  # a run folder that is not the chief's: no checkpoint
    for name in ("config.json", "run.json"):
        shutil.copy(chief_run / name, worker_run / name)
    arguments = [
        worker_arguments(workspace, run, workspace / "unused.npz", "--resume")
        for run in (chief_run, worker_run)
    ]
    logs = workspace / "unshared-logs"
    logs.mkdir()
    assert launch_workers(arguments, logs, expected_codes=(1,)) == [1, 1]
    for log in logs.iterdir():
        text = log.read_text()
        assert "the workers found different checkpoints in" in text
        assert "(epochs completed per replica: [2, 0])" in text
        assert "resuming needs RUN_DIR on a file system all workers share" in text


STOCHASTIC_DEPTH_ON_TWO_REPLICAS = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from musicnext_tf.layers import StochasticDepth
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    layer = StochasticDepth(0.5, seed=3)
ones = strategy.experimental_distribute_values_from_function(lambda _: tf.ones([64, 2, 2, 1]))
kept = strategy.run(lambda x: layer(x, training=True)[:, 0, 0, 0], args=(ones,))
first, second = (t.numpy() for t in strategy.experimental_local_results(kept))
assert set(first) <= {0.0, 2.0} and set(second) <= {0.0, 2.0}, (first, second)
assert 16 <= (first > 0).sum() <= 48 and 16 <= (second > 0).sum() <= 48
assert (first != second).any(), "both replicas dropped the same rows"
print("ok")
"""


def test_stochastic_depth_draws_other_rows_on_each_replica():
    result = subprocess.run(
        [sys.executable, "-c", STOCHASTIC_DEPTH_ON_TWO_REPLICAS],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-2000:]
