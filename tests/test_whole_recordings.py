"""Whole recordings and the small-data regime: random crops, augmentation, the learning-rate
schedule, plain-logit training metrics, the split on disk and the classical baseline in reports."""

from __future__ import annotations

import csv
import dataclasses
import json

import keras
import numpy as np
import pytest
import soundfile
import tensorflow as tf
from helpers import TIMBRES, timbre_clip, tiny_config

from musicnext_tf import cli
from musicnext_tf.config import ConfigError, FeatureConfig, ModelConfig, TrainConfig, resolve
from musicnext_tf.model import build_model, training_model
from musicnext_tf.pipeline import (
    augment_segment,
    crop_counts,
    random_crops,
    steps_per_epoch,
    training_dataset,
)
from musicnext_tf.prepare import SplitFeatures
from musicnext_tf.run_folder import choose_model
from musicnext_tf.train import compile_for_training, fit, learning_rate

FEATURES = FeatureConfig(n_mels=4, segment_frames=8)


def batches(dataset, count):
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


@pytest.fixture()
def recordings(tmp_path):
    """Three cached recordings of 2, 5 and 1 segments whose frames are numbered: frame f of
    recording r holds 1000 r + f in every mel bin, so a crop shows where it came from."""
    files = []
    for clip, count in enumerate([2, 5, 1]):
        frames = np.arange(count * 8, dtype=np.float32) + 1000 * clip
        entry = np.repeat(frames[:, None], 4, axis=1).reshape(count, 8, 4)
        path = tmp_path / f"clip{clip}.npy"
        np.save(path, entry)
        files.append(str(path))
    return SplitFeatures(files, np.array([0, 1, 0], np.int32), ["a", "b", "c"])


def test_random_crops_are_windows_from_anywhere_in_the_recording():
    log_mel = np.arange(40, dtype=np.float32)[:, None].repeat(4, axis=1).reshape(5, 8, 4, 1)
    crops = random_crops(tf.constant(log_mel), 200, tf.constant([3, 4], tf.int64), FEATURES)
    crops = crops.numpy()[..., 0, 0]  # [200, 8]: the frame numbers of each crop
    assert crops.shape == (200, 8)
    np.testing.assert_array_equal(np.diff(crops, axis=1), 1)  # contiguous frames
    starts = crops[:, 0]
    assert starts.min() == 0 and starts.max() == 32  # every start 0..32 is possible
    assert len(set(starts)) > 25  # not the fixed grid 0, 8, 16, 24, 32
    again = random_crops(tf.constant(log_mel), 200, tf.constant([3, 4], tf.int64), FEATURES)
    np.testing.assert_array_equal(crops, again.numpy()[..., 0, 0])


def test_crops_per_recording_stream_is_seeded_by_epoch_and_resumable(recordings):
    train = TrainConfig(batch_size=4, seed=2, crops_per_recording=4, flip_probability=0.0)
    steps = steps_per_epoch(recordings, train)
    assert steps == 3  # 3 recordings x 4 crops, whatever their lengths
    stream = batches(training_dataset(recordings, FEATURES, train, False), 3 * steps)
    resumed = batches(training_dataset(recordings, FEATURES, train, False, initial_epoch=2), steps)
    for (a, ya), (b, yb) in zip(stream[2 * steps :], resumed):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ya, yb)
    epochs = [np.concatenate([x for x, _ in stream[e * steps : (e + 1) * steps]]) for e in range(3)]
    for segments in epochs:
        first_frames = segments[:, 0, 0, 0]
        recording = (first_frames // 1000).astype(int)
        assert np.bincount(recording, minlength=3).tolist() == [4, 4, 4]
        np.testing.assert_array_equal(np.diff(segments[..., 0, 0], axis=1), 1)
        assert np.all(first_frames % 1000 <= np.array([8, 32, 0])[recording])
    assert not np.array_equal(np.sort(epochs[0].ravel()), np.sort(epochs[1].ravel()))


def test_balanced_crops_share_an_epoch_equally_among_genres(recordings):
    train = TrainConfig(crops_per_recording=4, batch_size=4)
    split = SplitFeatures(
        recordings.files * 2, np.array([0, 0, 0, 0, 0, 1], np.int32), list("abcdef")
    )
    assert crop_counts(split, train).tolist() == [4] * 6
    balanced = crop_counts(split, dataclasses.replace(train, balance_genres=True))
    assert balanced.tolist() == [2, 2, 2, 2, 2, 12]  # 24 crops: 10 + 12, about 12 per genre
    assert steps_per_epoch(split, dataclasses.replace(train, balance_genres=True)) == 6


def test_augmentation_masks_gain_and_flip():
    segment = tf.constant(np.arange(64 * 16, dtype=np.float32).reshape(64, 16, 1))
    train = TrainConfig(
        flip_probability=0.0,
        gain_db=0.0,
        time_masks=2,
        time_mask_frames=10,
        freq_masks=1,
        freq_mask_bins=5,
    )
    masked_frames = masked_bins = 0
    for position in range(50):
        out = augment_segment(segment, tf.constant([1, position], tf.int64), train, -7.0)
        out = out.numpy()[..., 0]
        filled = out == -7.0
        frames = np.all(filled, axis=1)  # whole frames masked
        bins = np.all(filled, axis=0)  # whole mel bins masked
        kept = ~filled
        np.testing.assert_array_equal(out[kept], segment.numpy()[..., 0][kept])
        np.testing.assert_array_equal(filled, frames[:, None] | bins[None, :])
        assert frames.sum() <= 20 and bins.sum() <= 5
        masked_frames += frames.sum()
        masked_bins += bins.sum()
    assert 0 < masked_frames and 0 < masked_bins  # masks happen, with random widths
    gain = TrainConfig(flip_probability=0.0, gain_db=6.0)
    shifts = [
        (augment_segment(segment, tf.constant([0, p], tf.int64), gain, 0.0) - segment).numpy()
        for p in range(40)
    ]
    for shift in shifts:
        assert np.ptp(shift) < 1e-3 and abs(shift.flat[0]) <= 6.0  # one level change per segment
    assert np.std([shift.flat[0] for shift in shifts]) > 1.0


def test_cosine_schedule_warms_up_then_decays_to_zero():
    train = TrainConfig(epochs=10, learning_rate=1e-3, schedule="cosine", warmup_epochs=2)
    schedule = learning_rate(train, steps_per_epoch=5)
    values = [float(schedule(step)) for step in (0, 5, 10, 30, 50)]
    assert values[0] == pytest.approx(0.0, abs=1e-12)
    assert values[1] == pytest.approx(5e-4, rel=1e-5)  # halfway through the warm-up
    assert values[2] == pytest.approx(1e-3, rel=1e-5)
    assert values[3] == pytest.approx(1e-3 * 0.5 * (1 + np.cos(np.pi * 20 / 40)), rel=1e-4)
    assert values[4] == pytest.approx(0.0, abs=1e-9)
    assert learning_rate(TrainConfig(learning_rate=3e-4)) == 3e-4  # the paper's constant rate


def test_config_checks_sizes_schedules_and_augmentation():
    assert ModelConfig(size="tiny").widths == [32, 64, 128, 256]
    assert ModelConfig(size="small", architecture="resnet").depths == [2, 2, 2, 2]
    assert ModelConfig(size="tiny", depths=[1, 1], widths=[8, 16]).depths == [1, 1]
    with pytest.raises(ConfigError, match="size 'huge' is unknown"):
        ModelConfig(size="huge")
    with pytest.raises(ConfigError, match="schedule"):
        TrainConfig(schedule="step")
    with pytest.raises(ConfigError, match="crops_per_recording"):
        TrainConfig(crops_per_recording=-1)
    # the paper presets keep the paper's regime; the folder preset has the small-data one
    gtzan = resolve("gtzan")
    assert (gtzan.model.depths, gtzan.train.crops_per_recording) == ([3, 3, 9, 3], 0)
    assert (gtzan.train.schedule, gtzan.train.weight_decay, gtzan.audio.clip_rule) == (
        "constant",
        0.0,
        "head",
    )
    folder = resolve("folder")
    assert folder.audio.clip_rule == "full" and folder.train.crops_per_recording > 0
    assert folder.data.validation_fraction > 0 and folder.model.size != "standard"


def test_training_accuracy_is_measured_on_the_plain_logits():
    keras.utils.set_random_seed(4)
    classifier = build_model(
        ModelConfig(depths=[1], widths=[8], margin=4), FEATURES, 3, 0.0, 1.0, anneal_steps=10
    )
    trainer = training_model(classifier)
    compile_for_training(trainer, TrainConfig())
    head = classifier.get_layer("head")
    head.anneal_step.assign(10_000)  # lambda ~ 0: the full margin
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, 4, 1)).astype(np.float32)
    y = rng.integers(0, 3, 64).astype(np.int32)
    plain = classifier(x).numpy()
    outputs = trainer({"segments": x, "labels": y}, training=True)
    margin = outputs["margin_logits"].numpy()
    plain_accuracy = np.mean(np.argmax(plain, 1) == y)
    assert np.mean(np.argmax(margin, 1) == y) < plain_accuracy  # the margin shrinks the truth
    trainer.reset_metrics()
    result = trainer.compute_metrics(x, y, outputs)
    assert float(result["accuracy"]) == pytest.approx(plain_accuracy)
    expected = keras.losses.sparse_categorical_crossentropy(y, plain, from_logits=True)
    assert float(result["crossentropy"]) == pytest.approx(float(np.mean(expected)), rel=1e-5)
    loss = trainer.compute_loss(y=y, y_pred=outputs)
    margin_loss = keras.losses.sparse_categorical_crossentropy(y, margin, from_logits=True)
    assert float(loss) == pytest.approx(float(np.mean(margin_loss)), rel=1e-5)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """Three learnable classes of FLAC 'songs' of 6-12 s each, longer than the 3 s clip."""
    root = tmp_path_factory.mktemp("songs")
    rng = np.random.default_rng(3)
    for kind in TIMBRES:
        (root / kind).mkdir()
        for n in range(6):
            seconds = rng.uniform(6.0, 12.0)
            audio = timbre_clip(kind, seconds, 22050, rng)
            soundfile.write(str(root / kind / f"{kind}-{n}.flac"), audio, 22050)
    return root


def test_whole_recordings_train_with_crops_and_report_the_baseline(songs, tmp_path, capsys):
    config = tiny_config(
        songs,
        audio={"clip_rule": "full"},
        data={"validation_fraction": 0.17, "test_fraction": 0.34},
        train={
            "epochs": 4,
            "crops_per_recording": 6,
            "balance_genres": True,
            "schedule": "cosine",
            "weight_decay": 0.01,
            "report_model": "last",
        },
    )
    run = tmp_path / "run"
    metrics = fit(config, run, progress=False)
    assert metrics["test_clip_accuracy"] >= 0.83  # 6 test songs, chance 0.33
    assert 0.0 <= metrics["baseline_clip_accuracy"] <= 1.0
    # a validation split picks the best epoch, but the run reports (and defaults to) the last
    assert metrics["model"] == "last" and metrics["best_epoch"] is not None
    assert (run / "model_best.keras").exists() and choose_model(run, None) == "last"
    run_facts = json.loads((run / "run.json").read_text())
    assert run_facts["steps_per_epoch"] == -(-run_facts["clips"]["train"] * 6 // 8)
    # whole recordings: every segment of each song is in the cache
    for path in json.loads((run / "metrics.json").read_text())["evaluation"][:1]:
        report = json.loads((run / path).read_text())
        frames = 1 + np.array([6.0, 12.0]) * 22050 // 256  # the songs' length range in frames
        assert frames[0] // 64 * 6 <= report["segments"] <= frames[1] // 64 * 6
        assert report["classical_baseline"]["test_clips"] == report["clips"] == 6
        assert "## Classical baseline" in (run / path.replace(".json", ".md")).read_text()
    with (run / "split.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 18 and set(rows[0]) == {"track_id", "path", "genre", "split", "status"}
    assert {row["split"] for row in rows} == {"train", "validation", "test"}
    assert sum(row["split"] == "test" for row in rows) == 6
    assert all(row["status"] == "kept" for row in rows)
    assert {row["genre"] for row in rows} == set(TIMBRES)
    assert len(list((run / "logs").glob("*.results"))) == 1  # the HPARAMS table's results
    capsys.readouterr()
    assert cli.main(["baseline", str(run), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "classical baseline" in out and "the run's model: clip accuracy" in out
    saved = json.loads((run / "evaluation" / "baseline-folder-test.json").read_text())
    assert saved["clip_accuracy"] == metrics["baseline_clip_accuracy"]


def test_fit_options_for_the_clip_rule_split_crops_and_size(tmp_path, capsys):
    args = cli.build_parser().parse_args(
        [
            "fit",
            "--data",
            "gtzan",
            "--clip-rule",
            "full",
            "--test-fraction",
            "0.3",
            "--validation-fraction",
            "0.2",
            "--crops-per-recording",
            "8",
            "--size",
            "small",
        ]
    )
    config = resolve(args.data, None, cli._fit_overrides(args))
    assert config.audio.clip_rule == "full"
    assert (config.data.test_fraction, config.data.validation_fraction) == (0.3, 0.2)
    assert config.train.crops_per_recording == 8
    assert config.model.size == "small" and config.model.widths == [48, 96, 192, 384]
    with pytest.raises(SystemExit):
        cli.main(["fit", "--data", "gtzan", "--clip-rule", "middle"])
    assert "invalid choice" in capsys.readouterr().err
