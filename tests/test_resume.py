"""Checkpoints and exact resume: a run interrupted at any moment (kill -9, Ctrl-C, a failure while a
checkpoint is written) and resumed ends with the weights, optimizer state, L-softmax annealing step
and random generator states of an uninterrupted run, with no epoch repeated or lost.

Tolerance: zero. On this machine the resumed and the uninterrupted run were measured bitwise
identical (every array of `trainer.weights.h5`, Adam moments included), in one process and between
processes, so the tests compare with `np.array_equal`. Any repeated or lost step would move the
weights by about the learning rate (1e-3) and change the integer step counters.
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
from helpers import write_timbre_dataset

from musicnext_tf import cli, register_keras_objects, run_folder, train
from musicnext_tf.config import load_run_config
from musicnext_tf.run_folder import RunError, latest_checkpoint, run_lock

register_keras_objects()  # the custom classes, for load_model

EPOCHS = 3
SUBPROCESS_SECONDS = 180  # bound on every CLI subprocess; a normal one takes about 10 s here

# batch size 1 makes an epoch ~140 short steps (under a second), so "epoch 2 is under way" lasts
# long enough to be seen and killed; drop_path exercises the random generator state. The folder
# preset's regime (random crops, masks, gain, cosine schedule, AdamW) must resume exactly too:
# 36 training recordings x 4 crops = 144 segments per epoch
CONFIG = """\
[data]
test_fraction = 0.2
validation_fraction = 0.2
cache_dir = "{cache}"
[audio]
clip_seconds = 3.0
min_seconds = 1.0
[features]
n_fft = 512
n_mels = 32
segment_frames = 64
segments_per_clip = 4
[model]
depths = [1, 1]
widths = [8, 16]
margin = 2
drop_path = 0.2
[train]
crops_per_recording = 4
epochs = {epochs}
batch_size = 1
learning_rate = 1e-3
"""


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """The dataset, a config file and a feature cache shared by the tests of this module."""
    root = tmp_path_factory.mktemp("resume")
    write_timbre_dataset(root / "data", clips_per_class=20)
    (root / "tiny.toml").write_text(CONFIG.format(cache=root / "cache", epochs=EPOCHS))
    return root


def fit_arguments(workspace: Path, run_dir: Path) -> list[str]:
    return [
        "fit",
        "--data",
        "folder",
        "--data-dir",
        str(workspace / "data"),
        "--config",
        str(workspace / "tiny.toml"),
        "--run-dir",
        str(run_dir),
    ]


def cli_command(arguments: list[str]) -> list[str]:
    return [sys.executable, "-m", "musicnext_tf.cli", *arguments]


def subprocess_environment() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def reference_run(workspace) -> Path:
    """An uninterrupted run, by the CLI in a subprocess like the interrupted one."""
    run_dir = workspace / "reference"
    result = subprocess.run(
        cli_command([*fit_arguments(workspace, run_dir), "--quiet"]),
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


def trainer_state(run_dir: Path) -> dict[str, np.ndarray]:
    """Every array of the final checkpoint: weights, Adam moments and counters, anneal step."""
    arrays = {}
    path = run_dir / "checkpoints" / f"epoch-{EPOCHS:04d}" / "trainer.weights.h5"
    with h5py.File(path, "r") as file:
        file.visititems(
            lambda name, item: (
                arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


def history(run_dir: Path) -> list[dict[str, str]]:
    lines = (run_dir / "history.csv").read_text().splitlines()
    header = lines[0].split(",")
    return [dict(zip(header, line.split(","))) for line in lines[1:]]


def assert_same_as_reference(run_dir: Path, reference: Path, sessions: list[int]) -> None:
    rows, expected_rows = history(run_dir), history(reference)
    assert [row["epoch"] for row in rows] == ["1", "2", "3"]  # none repeated, none lost
    assert [int(row["session"]) for row in rows] == sessions
    for row, expected in zip(rows, expected_rows):
        for key in ("loss", "accuracy", "lsoftmax_lambda", "val_loss", "val_clip_accuracy"):
            assert row[key] == expected[key], (row["epoch"], key)
    state, expected_state = trainer_state(run_dir), trainer_state(reference)
    assert state.keys() == expected_state.keys()
    for name, array in expected_state.items():
        assert np.array_equal(state[name], array), name
    steps = load_run_config(run_dir).train.epochs * 144  # 144 training segments, batch size 1
    last = keras.saving.load_model(run_dir / "model_last.keras")
    assert int(last.get_layer("head").anneal_step.numpy()) == steps
    assert int(state["optimizer/vars/0"]) == steps  # Adam's iteration count


class TerminalOutput:
    """A pseudo-terminal for a child's stdout and stderr (so Keras draws its live bar, as for a
    user at a terminal), read into `text` by a thread."""

    def __init__(self):
        self.master, self.child_end = pty.openpty()
        self.buffer = bytearray()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # the child's end is closed: it has exited
                return
            if not data:
                return
            self.buffer += data

    @property
    def text(self) -> str:
        return bytes(self.buffer).decode("utf-8", errors="replace")

    def close(self) -> None:
        self.reader.join(timeout=5)
        os.close(self.master)


def test_kill_9_during_epoch_2_then_resume_equals_an_uninterrupted_run(workspace, reference_run):
    run_dir = workspace / "killed"
    ansi = re.compile(r"\x1b\[[0-9;]*m")
    terminal = TerminalOutput()
    process = subprocess.Popen(
        cli_command(fit_arguments(workspace, run_dir)),
        stdout=terminal.child_end,
        stderr=terminal.child_end,
        env=subprocess_environment(),
    )
    os.close(terminal.child_end)
    try:
        deadline = time.monotonic() + SUBPROCESS_SECONDS
        while True:
            assert process.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "epoch 2 never started"
            output = ansi.sub("", terminal.text)
            epoch_2 = output.find("Epoch 2/3")
            if epoch_2 >= 0 and (run_dir / "checkpoints" / "epoch-0001").is_dir():
                # on a terminal Keras' bar prints "k/144" after the first steps of epoch 2
                seen_steps = re.findall(r"(\d+)/(\d+)", output[epoch_2 + len("Epoch 2/3") :])
                if seen_steps:
                    break
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        terminal.close()
    assert process.returncode == -signal.SIGKILL
    assert int(seen_steps[0][0]) < int(seen_steps[0][1])  # killed during epoch 2
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch-0001"]
    assert not (run_dir / "metrics.json").exists()

    resumed = subprocess.run(  # into pipes: no bar, one line per epoch
        cli_command(["fit", "--resume", str(run_dir)]),
        env=subprocess_environment(),
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_SECONDS,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not any(code in resumed.stdout + resumed.stderr for code in ("\r", "\x1b", "\b"))
    epoch_3 = resumed.stdout.split("Epoch 3/3\n", 1)[1].splitlines()[0]
    assert re.match(r"\d+/\d+ - \d+s - ", epoch_3), epoch_3  # Keras's one line of the epoch
    assert_same_as_reference(run_dir, reference_run, sessions=[1, 2, 2])
    ours, theirs = (
        json.loads((path / "metrics.json").read_text()) for path in (run_dir, reference_run)
    )
    for key in ("test_segment_accuracy", "test_clip_accuracy", "test_loss", "best_epoch"):
        assert ours[key] == theirs[key], key
    assert (ours["epochs_completed"], ours["sessions"]) == (EPOCHS, 2)


class InterruptOnce(keras.callbacks.Callback):
    """Raises KeyboardInterrupt (what Ctrl-C does) after a given batch of a given epoch, once."""

    def __init__(self, epoch: int, batch: int):
        super().__init__()
        self.epoch, self.batch, self.current, self.fired = epoch, batch, -1, False

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if not self.fired and (self.current, batch) == (self.epoch, self.batch):
            self.fired = True
            raise KeyboardInterrupt


def test_ctrl_c_keeps_the_last_epoch_says_how_to_resume_and_resumes_exactly(
    workspace, reference_run, tmp_path, monkeypatch, capsys
):
    interrupt = InterruptOnce(epoch=1, batch=40)  # 0-based: during the second epoch
    monkeypatch.setattr(train, "observer_callbacks", lambda run: [interrupt])
    run_dir = tmp_path / "run"
    assert cli.main([*fit_arguments(workspace, run_dir), "--quiet"]) == 130
    error = capsys.readouterr().err
    assert f"epochs 1-1 are kept in {run_dir / 'checkpoints' / 'epoch-0001'}" in error
    assert f"musicnext-tf fit --resume {run_dir}" in error
    assert latest_checkpoint(run_dir).epoch == 1 and len(history(run_dir)) == 1

    assert cli.main(["fit", "--resume", str(run_dir), "--quiet"]) == 0
    assert_same_as_reference(run_dir, reference_run, sessions=[1, 2, 2])


def test_a_failure_while_writing_a_checkpoint_keeps_the_previous_one(
    workspace, reference_run, tmp_path, monkeypatch
):
    real_write_json = run_folder.write_json

    def fail_on_second_checkpoint(path, values):
        if Path(path).name == "state.json" and values["epochs_completed"] == 2:
            raise KeyboardInterrupt  # half of the checkpoint folder is written at this point
        real_write_json(path, values)

    monkeypatch.setattr(run_folder, "write_json", fail_on_second_checkpoint)
    run_dir = tmp_path / "run"
    config = load_run_config(reference_run)
    with pytest.raises(KeyboardInterrupt):
        train.fit(config, run_dir, progress=False)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch-0001"]
    assert not list(run_dir.glob(".tmp-*"))
    monkeypatch.undo()
    train.resume(run_dir, progress=False)
    assert_same_as_reference(run_dir, reference_run, sessions=[1, 2, 2])


def test_leftovers_of_a_killed_checkpoint_write_are_ignored_and_removed(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    (run_dir / "checkpoints" / ".tmp-abc123").mkdir()  # a kill during a checkpoint write
    (run_dir / "checkpoints" / ".tmp-abc123" / "trainer.weights.h5").write_bytes(b"partial")
    (run_dir / "checkpoints" / "epoch-0009").mkdir()  # no state.json: not a checkpoint
    (run_dir / ".tmp-0f0f.keras").write_bytes(b"partial")  # a kill while linking a model
    assert latest_checkpoint(run_dir).epoch == EPOCHS
    run_folder.remove_stale(run_dir, keep=latest_checkpoint(run_dir))
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["epoch-0003"]
    assert not list(run_dir.glob(".tmp-*"))


def test_resuming_a_finished_run_does_nothing(reference_run, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()}
    assert cli.main(["fit", "--resume", str(run_dir), "--quiet"]) == 0
    assert "the run has finished; nothing to resume" in capsys.readouterr().out
    assert train.resume(run_dir, progress=False)["epochs_completed"] == EPOCHS
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in run_dir.rglob("*") if p.is_file()}
    assert after == before


def test_resume_refuses_options_that_disagree_with_the_run(workspace, reference_run, capsys):
    run = str(reference_run)
    assert cli.main(["fit", "--resume", run, "--epochs", "5", "--seed", "3", "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"--resume continues {run} with the settings in {run}/config.json" in error
    assert "--epochs 5 (the run has 3)" in error and "--seed 3 (the run has 0)" in error
    assert "Drop them, or start a new run with another --run-dir" in error
    assert cli.main(["fit", "--resume", run, "--config", str(workspace / "tiny.toml")]) == 2
    assert "--config" in capsys.readouterr().err
    # equal values do not disagree
    assert cli.main(["fit", "--resume", run, "--epochs", "3", "--data", "folder", "--quiet"]) == 0
    capsys.readouterr()
    assert cli.main([*fit_arguments(workspace, reference_run), "--quiet"]) == 2
    error = capsys.readouterr().err
    assert f"{run} already holds a run; continue it with `musicnext-tf fit --resume {run}`" in error
    assert cli.main(["fit", "--resume", str(workspace), "--quiet"]) == 2
    assert "a run folder written by `musicnext-tf fit`?" in capsys.readouterr().err


def test_a_run_folder_in_use_is_not_trained_twice(reference_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    (run_dir / "metrics.json").unlink()  # as if its last epoch were still being trained
    with run_lock(run_dir):
        with pytest.raises(RunError, match=r"is being trained by another process \(pid \d+\)"):
            train.resume(run_dir, progress=False)


def test_models_are_published_as_copies_where_hard_links_fail(reference_run, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    shutil.copytree(reference_run, run_dir)
    for model in run_dir.glob("model_*.keras"):
        model.unlink()

    def no_links(source, target):
        raise OSError("hard links are not supported here")

    monkeypatch.setattr(os, "link", no_links)
    run_folder.publish_models(run_dir, latest_checkpoint(run_dir))
    for which in ("best", "last"):
        published = run_dir / f"model_{which}.keras"
        source = latest_checkpoint(run_dir).model_file(which)
        assert published.read_bytes() == source.read_bytes()
        assert not os.path.samefile(published, source)  # a copy, not a link
    assert not list(run_dir.glob(".tmp-*"))
