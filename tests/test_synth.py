"""The demo-genre synthesiser: reproducible clips, sane signals, a crash-safe idempotent writer,
and genres that features can tell apart but loudness (or any one feature) cannot."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time

import librosa
import numpy as np
import pytest
import soundfile
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import musicnext_tf.demo_music as synth

RATE = 22050


def expected_names(clips: int) -> list[str]:
    return sorted(f"{g}/{g}.{k:04d}.wav" for g in synth.DEMO_GENRES for k in range(clips))


def visible_files(root) -> list[str]:
    """Files a folder loader would see: everything not hidden, relative to `root`."""
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )


# --- clips ------------------------------------------------------------------------------------


def test_genre_list():
    assert len(synth.DEMO_GENRES) >= 5
    assert len(set(synth.DEMO_GENRES)) == len(synth.DEMO_GENRES)


@pytest.mark.parametrize("genre", synth.DEMO_GENRES)
def test_same_seed_gives_identical_samples_and_other_seeds_differ(genre):
    a = synth.synthesize_clip(genre, 11, seconds=2.0)
    b = synth.synthesize_clip(genre, 11, seconds=2.0)
    assert np.array_equal(a, b)
    assert not np.allclose(a, synth.synthesize_clip(genre, 12, seconds=2.0))
    assert not np.allclose(a, synth.synthesize_clip(genre, 11, seconds=2.0, clip_index=1))


def test_genres_differ_for_the_same_seed():
    clips = [synth.synthesize_clip(g, 0, seconds=1.0) for g in synth.DEMO_GENRES]
    for i in range(len(clips)):
        for j in range(i):
            assert not np.allclose(clips[i], clips[j])


@pytest.mark.parametrize("genre", synth.DEMO_GENRES)
@pytest.mark.parametrize(("seconds", "rate"), [(3.0, RATE), (1.37, 16000)])
def test_clip_is_a_sane_signal(genre, seconds, rate):
    x = synth.synthesize_clip(genre, 5, seconds=seconds, sample_rate=rate)
    assert x.shape == (round(seconds * rate),)
    assert x.dtype == np.float32
    assert np.isfinite(x).all()
    peak = float(np.max(np.abs(x)))
    assert 0.29 <= peak <= 0.951  # normalised to a random peak in [0.3, 0.95]
    assert np.sqrt(np.mean(np.square(x, dtype=np.float64))) > 0.02  # not silent


def test_peak_level_is_randomised_per_clip():
    peaks = [np.max(np.abs(synth.synthesize_clip("rock", 0, 1.0, clip_index=k))) for k in range(8)]
    assert max(peaks) - min(peaks) > 0.2


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown demo genre 'polka'"):
        synth.synthesize_clip("polka", 0)
    with pytest.raises(ValueError, match="clips_per_genre"):
        synth.write_demo_dataset(tmp_path, clips_per_genre=0)
    with pytest.raises(ValueError, match="unknown demo genre"):
        synth.write_demo_dataset(tmp_path, clips_per_genre=1, genres=("rock", "polka"))
    with pytest.raises(ValueError, match="seconds"):
        synth.synthesize_clip("rock", 0, seconds=0.0)
    assert not any(tmp_path.iterdir())  # validation happens before anything is written


def test_listing_datasets_does_not_import_the_synthesiser():
    # The command line imports `datasets.LOADERS` to check --data; the synthesiser is loaded only
    # when the demo set is actually indexed.
    code = (
        "import sys, musicnext_tf.datasets as d; assert 'demo' in d.LOADERS; "
        "print(sorted(m for m in sys.modules if m.startswith('musicnext_tf.demo_music')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_demo_loader_indexes_the_synthesised_set(tmp_path):
    from musicnext_tf import datasets
    from musicnext_tf.config import ConfigError, resolve

    options = {"clips_per_genre": 4, "seconds": 1.0}
    config = resolve("demo", None, {"data": {"cache_dir": str(tmp_path), "options": options}})
    index = datasets.load_index(config, progress=False)
    assert index.name == "demo" and index.genres == synth.DEMO_GENRES
    assert sorted(t.track_id for t in index.tracks) == expected_names(4)
    assert all(t.path.is_file() and t.label == t.path.parent.name for t in index.tracks)
    assert (index.root / synth.VERSION_FILE).is_file()
    config.data.options["colour"] = "blue"
    with pytest.raises(
        ConfigError, match=r"unknown \[data\] options for the demo dataset: \['colour'\]"
    ):
        datasets.load_index(config, progress=False)


# --- writer -----------------------------------------------------------------------------------


def write_small(root, **kwargs):
    options = dict(clips_per_genre=2, seconds=3.0, sample_rate=RATE, seed=5, progress=False)
    options.update(kwargs)
    return synth.write_demo_dataset(root, **options)


def test_writes_exactly_the_expected_readable_files(tmp_path):
    root = tmp_path / "demo"
    assert write_small(root) == root
    assert visible_files(root) == sorted(expected_names(2) + [synth.VERSION_FILE])
    assert not [p for p in root.rglob(".*")]  # no temporaries left behind
    for name in expected_names(2):
        info = soundfile.info(str(root / name))
        assert (info.samplerate, info.channels, info.frames) == (RATE, 1, 3 * RATE)
        assert info.format == "WAV" and info.subtype == "PCM_16"
    # Clip k of a genre is the documented synthesize_clip call, to 16-bit precision.
    audio, _ = soundfile.read(str(root / "jazz" / "jazz.0001.wav"), dtype="float32")
    expected = synth.synthesize_clip("jazz", 5, 3.0, RATE, clip_index=1)
    assert np.max(np.abs(audio - expected)) <= 1.0 / 32768 + 1e-6
    version = (root / synth.VERSION_FILE).read_text()
    assert synth.GENERATOR_VERSION in version and "clips_per_genre=2" in version


def test_second_call_rewrites_nothing(tmp_path):
    write_small(tmp_path)
    old = 1_000_000_000  # set an old mtime, so "unchanged" does not depend on clock resolution
    before = {}
    for name in visible_files(tmp_path):
        os.utime(tmp_path / name, ns=(old, old))
        before[name] = (tmp_path / name).stat()
    write_small(tmp_path)
    assert visible_files(tmp_path) == sorted(before)
    for name, stat in before.items():
        now = (tmp_path / name).stat()
        assert (now.st_mtime_ns, now.st_ino) == (old, stat.st_ino), name


def test_missing_truncated_and_leftover_files_are_repaired(tmp_path):
    write_small(tmp_path)
    originals = {n: (tmp_path / n).read_bytes() for n in expected_names(2)}
    (tmp_path / "rock" / "rock.0001.wav").unlink()
    truncated = tmp_path / "jazz" / "jazz.0000.wav"
    truncated.write_bytes(originals["jazz/jazz.0000.wav"][:5000])
    (tmp_path / synth.VERSION_FILE).unlink()
    # What a killed writer leaves: a temporary beside the clip it never renamed into place.
    stale = tmp_path / "rock" / ".rock.0001.wav.k1ll3d.partial"
    stale.write_bytes(originals["rock/rock.0001.wav"][:3000])
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / "folk" / ".folk.0000.wav.busy.partial"  # maybe another live writer's
    fresh.write_bytes(b"RIFF")

    write_small(tmp_path)
    assert visible_files(tmp_path) == sorted(expected_names(2) + [synth.VERSION_FILE])
    for name, data in originals.items():
        assert (tmp_path / name).read_bytes() == data, name
    assert not stale.exists()
    assert fresh.exists()  # too recent to be called a leftover; never counted as a clip


def interrupt_third_clip(root, monkeypatch):
    """Runs the writer (seed 5) and "kills" it in the middle of writing its third clip."""
    real_write = soundfile.write
    calls = []

    def dying_write(file, *args, **kwargs):
        if not isinstance(file, io.BytesIO):  # a real file, not the in-memory header probe
            calls.append(file)
            if len(calls) == 3:
                file.write(b"RIFF\x00\x00")  # half a file, then the process "dies"
                raise KeyboardInterrupt
        return real_write(file, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(soundfile, "write", dying_write)
        with pytest.raises(KeyboardInterrupt):
            write_small(root)


def test_interrupted_write_leaves_no_partial_wav(tmp_path, monkeypatch):
    interrupt_third_clip(tmp_path, monkeypatch)
    # The two finished clips are whole, the third never appeared, no temporary is left, and
    # there is no DEMO_VERSION (only the hidden marker of the unfinished run's parameters).
    assert visible_files(tmp_path) == expected_names(2)[:2]
    assert [p.name for p in tmp_path.rglob(".*")] == [".DEMO_VERSION.pending"]
    for name in expected_names(2)[:2]:
        assert soundfile.info(str(tmp_path / name)).frames == 3 * RATE


@pytest.mark.parametrize("seed", [5, 6])
def test_rerun_after_an_interruption_completes_the_set(tmp_path, monkeypatch, seed):
    interrupt_third_clip(tmp_path, monkeypatch)
    write_small(tmp_path, seed=seed)
    assert visible_files(tmp_path) == sorted(expected_names(2) + [synth.VERSION_FILE])
    assert not [p for p in tmp_path.rglob(".*")]
    # With another seed, the clips the interrupted run finished must not be kept.
    audio, _ = soundfile.read(str(tmp_path / "ambient" / "ambient.0000.wav"), dtype="float32")
    expected = synth.synthesize_clip("ambient", seed, 3.0, RATE, clip_index=0)
    assert np.max(np.abs(audio - expected)) <= 1.0 / 32768 + 1e-6


def test_changed_parameters_rewrite_every_clip(tmp_path):
    write_small(tmp_path, seed=5)
    first = (tmp_path / "reggae" / "reggae.0000.wav").read_bytes()
    write_small(tmp_path, seed=6)
    assert (tmp_path / "reggae" / "reggae.0000.wav").read_bytes() != first
    assert "seed=6" in (tmp_path / synth.VERSION_FILE).read_text()


# --- separability -------------------------------------------------------------------------------

FEATURE_NAMES = (
    [f"mfcc{i}_mean" for i in range(13)]
    + [f"mfcc{i}_std" for i in range(13)]
    + ["log_centroid", "log_tempo", "pulse_clarity", "onset_variation"]
)


def clip_features(x: np.ndarray) -> np.ndarray:
    """Timbre (MFCC statistics, spectral centroid) and rhythm (tempo and clarity of the beat from
    the onset-strength autocorrelation) of one clip."""
    mfcc = librosa.feature.mfcc(y=x, sr=RATE, n_mfcc=13)
    centroid = librosa.feature.spectral_centroid(y=x, sr=RATE)
    onset = librosa.onset.onset_strength(y=x, sr=RATE)
    ac = librosa.autocorrelate(onset - onset.mean(), max_size=onset.size // 2)
    ac = ac / max(ac[0], 1e-9)
    lags = np.arange(ac.size)
    bpm = 60.0 * RATE / 512 / np.maximum(lags, 1)
    band = (bpm >= 40) & (bpm <= 240)
    best = lags[band][np.argmax(ac[band])]
    rhythm = [np.log(60.0 * RATE / 512 / best), ac[band].max(), onset.std() / (onset.mean() + 1e-9)]
    return np.concatenate([mfcc.mean(1), mfcc.std(1), [np.log(centroid.mean())], rhythm])


@pytest.fixture(scope="module")
def genre_table():
    """Features and labels of 8 ten-second clips per genre."""
    features, labels = [], []
    for label, genre in enumerate(synth.DEMO_GENRES):
        for k in range(8):
            x = synth.synthesize_clip(genre, 2024, seconds=10.0, sample_rate=RATE, clip_index=k)
            features.append(clip_features(x))
            labels.append(label)
    return np.asarray(features), np.asarray(labels)


@pytest.fixture(scope="module")
def loudness_table():
    """Log mean RMS of 24 five-second clips per genre (rows: genres). RMS is cheap, so this uses
    more (shorter) clips than the feature table, to make the loudness checks sensitive."""
    return np.array(
        [
            [
                np.log(librosa.feature.rms(y=synth.synthesize_clip(genre, 7, 5.0, clip_index=k)))
                .mean()
                .item()
                for k in range(24)
            ]
            for genre in synth.DEMO_GENRES
        ]
    )


def cv_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    """Held-out accuracy of a standardised logistic regression, 4-fold stratified."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    folds = StratifiedKFold(4, shuffle=True, random_state=0)
    return float(cross_val_score(model, x, y, cv=folds).mean())


CHANCE = 1.0 / len(synth.DEMO_GENRES)


def test_genres_are_learnable_from_timbre_and_rhythm_features(genre_table):
    features, labels = genre_table
    accuracy = cv_accuracy(features, labels)
    print(f"feature classifier: {accuracy:.3f} (chance {CHANCE:.3f})")
    assert accuracy >= 0.65


def test_loudness_alone_does_not_tell_the_genres_apart(loudness_table):
    genres, clips = loudness_table.shape
    labels = np.repeat(np.arange(genres), clips)
    accuracy = cv_accuracy(loudness_table.reshape(-1, 1), labels)
    # Effect size: how far apart the loudest and quietest genre's mean log-RMS are, in units of
    # the spread within a genre. Random levels alone give ~0.5 here; a genre-dependent level
    # (e.g. peak-normalising without mastering) gives ~1.5-2.
    spread = np.sqrt(loudness_table.var(axis=1, ddof=1).mean())
    means = loudness_table.mean(axis=1)
    separation = (means.max() - means.min()) / spread
    print(f"RMS-only classifier: {accuracy:.3f} (chance {CHANCE:.3f}), separation {separation:.2f}")
    assert accuracy <= CHANCE + 0.15
    assert separation <= 1.0


def test_no_single_feature_separates_the_genres(genre_table):
    features, labels = genre_table
    scores = {name: cv_accuracy(features[:, [j]], labels) for j, name in enumerate(FEATURE_NAMES)}
    best = max(scores, key=scores.get)
    print(f"best single feature {best}: {scores[best]:.3f}")
    assert scores[best] <= 0.75
