"""TensorBoard logs of a run: the pieces against independent references (scikit-learn, numpy),
the logger against an independent recomputation, and a real TensorBoard server that must serve
the scalars, images, histograms, projector and hparams of runs written by `fit`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import tiny_config, write_timbre_dataset
from sklearn.metrics import confusion_matrix

from musicnext_tf import datasets, monitor
from musicnext_tf.calibration import tempered_softmax as softmax
from musicnext_tf.config import TrainConfig
from musicnext_tf.model import build_model, embedding_model, needs_labels, training_model
from musicnext_tf.pipeline import steps_per_epoch, training_dataset
from musicnext_tf.prepare import prepare
from musicnext_tf.reporting import confusion_image
from musicnext_tf.train import compile_for_training, fit

EPOCHS = 2
SERVER_TIMEOUT = 120  # seconds for TensorBoard to start and load the logs (it imports TensorFlow)
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1 only


# ---- pure pieces --------------------------------------------------------------------------------


def test_mel_image_puts_time_left_to_right_and_low_bands_at_the_bottom():
    segment = np.full((6, 4), -100.0)  # [time, mel] in dB
    segment[0, 0] = 0.0  # first frame, lowest band: the loudest
    segment[5, 3] = -40.0  # last frame, highest band
    image = monitor.mel_image(segment)
    assert image.shape == (4, 6, 1) and image.dtype == np.float32
    assert image[-1, 0, 0] == 1.0  # bottom left
    assert image[0, -1, 0] == pytest.approx(0.5)  # top right: 40 dB below the maximum of 80
    assert image[0, 0, 0] == 0.0  # 100 dB down: clipped to black


def test_epoch_logs_are_split_into_training_and_validation_scalars():
    train, validation = monitor.split_epoch_logs(
        {"loss": 1.5, "accuracy": np.float32(0.5), "val_loss": 2.0, "val_accuracy": 0.25, "x": "a"}
    )
    assert train == {"loss": 1.5, "accuracy": 0.5}
    assert validation == {"loss": 2.0, "accuracy": 0.25}


# ---- the logger against an independent recomputation -------------------------------------------


@pytest.fixture(scope="module")
def timbre_root(tmp_path_factory):
    return write_timbre_dataset(tmp_path_factory.mktemp("timbres"), clips_per_class=6)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    # module fixtures run before the per-test MUSICNEXT_CACHE is set: name the cache explicitly
    return str(tmp_path_factory.mktemp("cache"))


def run_config(timbre_root, cache_dir, validation=0.2, **sections):
    data = {"validation_fraction": validation, "cache_dir": cache_dir}
    return tiny_config(timbre_root, data=data, train={"epochs": EPOCHS}, **sections)


def read_events(folder: Path) -> dict[str, list[tuple[int, np.ndarray]]]:
    """{tag: [(step, tensor value)]} of every summary in the event files of a folder."""
    values: dict[str, list] = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                values.setdefault(value.tag, []).append((event.step, tf.make_ndarray(value.tensor)))
    return values


def clip_means(classifier, split) -> tuple[np.ndarray, np.ndarray]:
    """Per clip, in numpy: mean softmax probabilities and mean pooled features."""
    embed = embedding_model(classifier)
    probabilities, pooled = [], []
    for path in split.files:
        segments = np.load(path)[..., None]
        probabilities.append(softmax(np.asarray(classifier(segments), np.float64)).mean(axis=0))
        pooled.append(np.asarray(embed(segments)).mean(axis=0))
    return np.array(probabilities), np.array(pooled)


EPOCH_STEPS = list(range(1, EPOCHS + 1))  # numbered as in history.csv


def test_logger_matches_an_independent_recomputation(timbre_root, cache_dir, tmp_path):
    config = run_config(timbre_root, cache_dir)
    prepared = prepare(datasets.load_index(config), config, progress=False)
    train_split, validation, test = (prepared.split(name) for name in datasets.base.SPLITS)
    assert len(validation) == 3 and len(test) == 6
    keras.utils.set_random_seed(1)
    classifier = build_model(config.model, config.features, 3, -40.0, 20.0, anneal_steps=20)
    trainer = training_model(classifier)
    compile_for_training(trainer, TrainConfig(learning_rate=3e-3))
    logger = monitor.TensorBoardLogger(tmp_path / "logs", config, classifier, prepared, "tiny")
    trainer.fit(
        training_dataset(train_split, config.features, config.train, needs_labels(trainer)),
        epochs=EPOCHS,
        steps_per_epoch=steps_per_epoch(train_split, config.train),
        callbacks=[logger],
        shuffle=False,
        verbose=0,
    )
    probabilities, pooled = clip_means(classifier, validation)
    expected = 100.0 * confusion_matrix(
        validation.labels, probabilities.argmax(axis=1), labels=[0, 1, 2], normalize="true"
    )
    images = read_events(tmp_path / "logs" / "validation")[monitor.CONFUSION_TAG]
    assert [step for step, _ in images] == EPOCH_STEPS
    width, height, last_png = images[-1][1][0], images[-1][1][1], images[-1][1][2]
    assert (int(width), int(height)) == (255, 255)  # 3 genres x 85-pixel cells
    np.testing.assert_array_equal(tf.io.decode_png(last_png).numpy(), confusion_image(expected))

    _, pooled = clip_means(classifier, test)
    reader = tf.train.load_checkpoint(str(tmp_path / "logs"))
    np.testing.assert_allclose(reader.get_tensor(monitor.EMBEDDING_TENSOR), pooled, rtol=1e-4)
    metadata = (tmp_path / "logs" / monitor.METADATA_FILE).read_text().splitlines()
    assert metadata == ["genre\tclip"] + [
        f"{prepared.genres[label]}\t{track}" for label, track in zip(test.labels, test.track_ids)
    ]

    root = read_events(tmp_path / "logs")
    examples = root[monitor.SEGMENTS_TAG][0][1]
    assert [int(examples[0]), int(examples[1]), len(examples)] == [64, 32, 2 + 3]  # 3 images
    first = np.load(train_split.files[np.flatnonzero(train_split.labels == 0)[0]])[0]
    np.testing.assert_allclose(
        tf.io.decode_png(examples[2]).numpy()[..., 0] / 255.0,
        monitor.mel_image(first)[..., 0],
        atol=1.0 / 255,  # 8-bit PNG
    )
    assert "_hparams_/session_start_info" in root

    # a resumed run (first epoch > 0) does not write the once-per-run summaries again
    resumed = monitor.TensorBoardLogger(tmp_path / "again", config, classifier, prepared, "tiny")
    resumed.on_epoch_begin(1)
    resumed.writers.close()
    assert not (tmp_path / "again").exists()


# ---- a real TensorBoard server on runs written by `fit` -----------------------------------------


@pytest.fixture(scope="module")
def runs(tmp_path_factory, timbre_root, cache_dir):
    """Two runs in one folder: MusicNeXt with L-softmax and a validation split, and ConvNeXt
    with a softmax head and none."""
    parent = tmp_path_factory.mktemp("runs")
    lsoftmax = run_config(timbre_root, cache_dir)
    convnext = run_config(
        timbre_root,
        cache_dir,
        validation=0.0,
        model={"architecture": "convnext", "head": "softmax"},
    )
    return parent, {
        "musicnext": (lsoftmax, fit(lsoftmax, parent / "musicnext", progress=False)),
        "convnext": (convnext, fit(convnext, parent / "convnext", progress=False)),
    }


def wait_for(probe, what: str, process: subprocess.Popen, log: Path):
    """Calls `probe` until it returns something truthy, within SERVER_TIMEOUT seconds."""
    deadline = time.monotonic() + SERVER_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"TensorBoard exited ({process.returncode}):\n{log.read_text()}")
        with contextlib.suppress(OSError, ValueError):
            result = probe()
            if result:
                return result
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


class Server:
    def __init__(self, url: str):
        self.url = url

    def get(self, path: str, **query) -> bytes:
        address = f"{self.url}{path}?{urllib.parse.urlencode(query)}"
        with NO_PROXY.open(address, timeout=30) as response:
            return response.read()

    def get_json(self, path: str, **query):
        return json.loads(self.get(path, **query))

    def post_json(self, path: str, body: dict):
        request = urllib.request.Request(
            self.url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with NO_PROXY.open(request, timeout=30) as response:
            return json.loads(response.read())


@contextlib.contextmanager
def tensorboard(logdir: Path, expected_runs: set[str], work: Path):
    """A TensorBoard subprocess on 127.0.0.1 and a port the OS picks; stopped on exit."""
    log = work / "tensorboard.log"
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir)]
    command += ["--host", "127.0.0.1", "--port", "0", "--reload_interval=1"]
    # the legacy loader: the image test fetches individualImage with the query strings it lists,
    # which the fast loader's blob keys do not fit (users' browsers need neither)
    command += ["--load_fast=false"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
    try:
        found = wait_for(
            lambda: re.search(r"http://127\.0\.0\.1:(\d+)/", log.read_text()),
            "TensorBoard's address",
            process,
            log,
        )
        server = Server(f"http://127.0.0.1:{found.group(1)}")
        wait_for(
            lambda: expected_runs <= set(server.get_json("/data/runs")), "the runs", process, log
        )
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    """TensorBoard on the logs of the MusicNeXt run, as a user starts it."""
    parent, _ = runs
    work = tmp_path_factory.mktemp("tensorboard")
    with tensorboard(parent / "musicnext" / "logs", {".", "train", "validation"}, work) as s:
        yield s


def test_tensorboard_serves_the_epoch_scalars(server, runs):
    config, metrics = runs[1]["musicnext"]
    history = metrics["history"]
    tags = server.get_json("/data/plugin/scalars/tags")["train"]
    expected = {
        "epoch_loss": history["loss"],
        "epoch_accuracy": history["accuracy"],
        "epoch_lsoftmax_lambda": history["lsoftmax_lambda"],
        "epoch_learning_rate": [config.train.learning_rate] * EPOCHS,
    }
    assert set(expected) <= set(tags)
    for tag, values in expected.items():
        points = server.get_json("/data/plugin/scalars/scalars", run="train", tag=tag)
        assert [step for _, step, _ in points] == EPOCH_STEPS, tag
        np.testing.assert_allclose([value for *_, value in points], values, rtol=1e-6)
    validation_keys = [key for key in history if key.startswith("val_")]
    for key in validation_keys:  # present once fit validates on the validation split
        tag = "epoch_" + key[len("val_") :]
        points = server.get_json("/data/plugin/scalars/scalars", run="validation", tag=tag)
        np.testing.assert_allclose([v for *_, v in points], history[key], rtol=1e-6)


def test_tensorboard_serves_the_images_and_the_confusion_table(server):
    tags = server.get_json("/data/plugin/images/tags")
    assert tags["."][monitor.SEGMENTS_TAG]["samples"] == 3
    assert tags["validation"][monitor.CONFUSION_TAG]["samples"] == 1
    entries = server.get_json(
        "/data/plugin/images/images", run="validation", tag=monitor.CONFUSION_TAG, sample=0
    )
    assert [entry["step"] for entry in entries] == EPOCH_STEPS
    png = server.get(
        "/data/plugin/images/individualImage", **urllib.parse.parse_qs(entries[-1]["query"])
    )
    image = tf.io.decode_png(png).numpy()
    assert image.shape == (255, 255, 3)
    # read each cell's percentage back from its colour; the table must say the same
    red = image[42::85, 42::85, 0].astype(np.float64)
    shown = 100.0 * (255.0 - red) / (255.0 - 8.0)
    np.testing.assert_allclose(shown.sum(axis=1), 100.0, atol=1.5)
    texts = server.get_json(
        "/data/plugin/text/text", run="validation", tag=monitor.CONFUSION_TABLE_TAG
    )
    assert [entry["step"] for entry in texts] == EPOCH_STEPS
    numbers = [float(n) for n in re.findall(r"<td>(\d+\.\d)</td>", texts[-1]["text"])]
    np.testing.assert_allclose(np.reshape(numbers, (3, 3)), shown, atol=1.0)


def test_tensorboard_serves_weight_histograms(server):
    tags = set(server.get_json("/data/plugin/histograms/tags")["train"])
    assert {"stem_conv/kernel", "stage_1_block_0_pointwise_conv_2/kernel", "head/kernel"} <= tags
    assert not any("anneal_step" in tag for tag in tags)  # an integer counter, not a weight
    points = server.get_json("/data/plugin/histograms/histograms", run="train", tag="head/kernel")
    assert [point[1] for point in points] == EPOCH_STEPS


def test_tensorboard_serves_the_embedding_projector(server, runs):
    config, _ = runs[1]["musicnext"]
    test = [t for t in datasets.load_index(config).tracks if t.split == "test"]
    assert "." in server.get_json("/data/plugin/projector/runs")
    info = server.get_json("/data/plugin/projector/info", run=".")
    (embedding,) = info["embeddings"]
    assert embedding["tensorName"] == monitor.EMBEDDING_TENSOR
    assert embedding["tensorShape"] == [len(test), config.model.widths[-1]]
    values = np.frombuffer(
        server.get("/data/plugin/projector/tensor", run=".", name=monitor.EMBEDDING_TENSOR),
        np.float32,
    )
    assert values.size == len(test) * config.model.widths[-1] and np.all(np.isfinite(values))
    metadata = server.get(
        "/data/plugin/projector/metadata", run=".", name=monitor.EMBEDDING_TENSOR
    ).decode()
    rows = [line.split("\t") for line in metadata.splitlines()]
    assert rows == [["genre", "clip"]] + [[t.label, t.track_id] for t in test]


def hparams_tables(server: Server) -> tuple[dict, list]:
    experiment = server.post_json("/data/plugin/hparams/experiment", {"experimentName": ""})
    groups = server.post_json(
        "/data/plugin/hparams/session_groups",
        {
            "experimentName": "",
            "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_RUNNING"],
            "colParams": [{"hparam": name} for name in ("architecture", "head", "margin")]
            + [{"metric": {"group": "", "tag": "test_clip_accuracy"}}],
            "startIndex": 0,
            "sliceSize": 10,
        },
    )
    infos = {info["name"]: info for info in experiment["hparamInfos"]}
    return infos, groups.get("sessionGroups", [])


def test_tensorboard_serves_the_hyperparameters(server, runs):
    config, metrics = runs[1]["musicnext"]
    infos, groups = hparams_tables(server)
    assert set(monitor.run_hparams(config)) == set(infos)
    assert infos["head"]["domainDiscrete"] == ["lsoftmax", "softmax"]
    (group,) = groups
    assert group["name"] == "musicnext"
    assert (group["hparams"]["architecture"], group["hparams"]["head"]) == ("musicnext", "lsoftmax")
    assert group["hparams"]["margin"] == 2 and group["hparams"]["depths"] == "1:1"

    # the metric columns, with --logdir RUN/logs: the run's results beside its settings
    experiment = server.post_json("/data/plugin/hparams/experiment", {"experimentName": ""})
    declared = {(m["name"]["group"], m["name"]["tag"]) for m in experiment["metricInfos"]}
    assert declared == {("", tag) for tag in monitor.FINAL_METRICS}
    shown = {value["name"]["tag"]: value["value"] for value in group["metricValues"]}
    history = metrics["history"]
    assert metrics["model"] == "best"
    best = metrics["best_epoch"] - 1
    expected = {
        "test_clip_accuracy": metrics["test_clip_accuracy"],
        "test_segment_accuracy": metrics["test_segment_accuracy"],
        "test_loss": metrics["test_loss"],
        "baseline_clip_accuracy": metrics["baseline_clip_accuracy"],
        "validation_clip_accuracy": history["val_clip_accuracy"][best],
        "validation_loss": history["val_loss"][best],
    }
    assert set(expected) <= set(shown), shown
    for name, value in expected.items():
        assert shown[name] == pytest.approx(value, rel=1e-6), name
    points = server.get_json("/data/plugin/scalars/scalars", run=".", tag="test_clip_accuracy")
    assert [step for _, step, _ in points] == [metrics["epochs_completed"]] == [EPOCHS]


def test_runs_with_different_networks_and_heads_compare_in_one_table(runs, tmp_path):
    parent, results = runs
    assert not (parent / "convnext" / "logs" / "validation").exists()  # no validation split
    expected = {"musicnext/logs/validation", "convnext/logs/train", "convnext/logs"}
    with tensorboard(parent, expected, tmp_path) as server:
        infos, groups = hparams_tables(server)
    assert sorted(infos["head"]["domainDiscrete"]) == ["lsoftmax", "softmax"]
    assert sorted(infos["architecture"]["domainDiscrete"]) == ["convnext", "musicnext", "resnet"]
    by_name = {group["name"]: group for group in groups}
    assert set(by_name) == {"musicnext", "convnext"}
    for name, (_, metrics) in results.items():
        values = {
            (metric["name"]["group"], metric["name"]["tag"]): metric["value"]
            for metric in by_name[name]["metricValues"]
        }
        assert values[("", "test_clip_accuracy")] == pytest.approx(
            metrics["test_clip_accuracy"], rel=1e-6
        )
        assert by_name[name]["hparams"]["head"] == ("softmax" if name == "convnext" else "lsoftmax")
