"""A classical baseline: hand-made recording descriptors and a logistic regression.

Every evaluation can show this "classical floor" beside the network: one fixed-length vector per
recording, computed from the cached log-mel segments (the same input the network sees), then a
standardised multinomial logistic regression trained on the training split only.

Per frame (a row of the recording's log-mel in dB, [frames, n_mels]), 50 descriptors:

- `mfcc_00` .. `mfcc_19`: 20 MFCCs, the orthonormal DCT-II of the dB log-mel over the mel axis,
  exactly `librosa.feature.mfcc(S=log_mel_db.T, n_mfcc=20)`;
- `delta_mfcc_00` .. `delta_mfcc_19`: their first-order deltas, librosa-style: the slope of a
  least-squares line over a 9-frame window (Savitzky-Golay, `mode="interp"` at the edges), exactly
  `librosa.feature.delta(mfcc, width=9)`; recordings shorter than 9 frames use `np.gradient`;
- `contrast_0` .. `contrast_6`: spectral contrast over 7 contiguous, near-equal sub-bands of the
  mel axis (the mel scale is already close to logarithmic, so no octave split): the mean of the
  top 2 % minus the mean of the bottom 2 % of the sub-band's dB values (at least one value each,
  so with 128 mel bands, about 18 per sub-band, it is the sub-band's max minus its min), in dB;
- `centroid`: the spectral centroid in mel-band index units (0 .. n_mels - 1), weighted by power;
- `flatness`: spectral flatness in dB, 10 log10(geometric mean / arithmetic mean of the power),
  0 for a flat frame and negative otherwise;
- `energy`: the frame's mean level in dB over the mel bands.

The vector is the 50 per-frame means over all frames, then the 50 standard deviations (ddof 0),
in that order: `feature_names()` lists the 100 names, `<descriptor>_mean` then `<descriptor>_std`.
Frames of digital silence (every band at the cache's -100 dB floor) are kept: they give finite
values (flat, centroid in the middle), never NaN or inf.

This module imports neither TensorFlow nor Keras (numpy, scipy and scikit-learn only); its imports
from this package (`scores`, `reporting`) wait until a baseline is evaluated or reported, so the
features and the classifier load on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for annotations: importing musicnext_tf.prepare loads TensorFlow
    from musicnext_tf.prepare import PreparedDataset, SplitFeatures

N_MFCC = 20
DELTA_WIDTH = 9  # librosa.feature.delta's default window
CONTRAST_BANDS = 7  # like librosa.feature.spectral_contrast's 6 octave bands + the one above
CONTRAST_QUANTILE = 0.02  # librosa's default
# Standardised features + L2 logistic regression: a convex, deterministic, well-understood floor
# that needs no tuning and trains in seconds on any dataset size we use.
CLASSIFIER = {"C": 1.0, "max_iter": 5000, "random_state": 0}
METHOD = (
    "mean/std of 20 MFCCs, their deltas, mel spectral contrast, centroid, flatness and energy; "
    "StandardScaler + multinomial logistic regression (C=1.0)"
)


def _descriptor_names() -> list[str]:
    return (
        [f"mfcc_{i:02d}" for i in range(N_MFCC)]
        + [f"delta_mfcc_{i:02d}" for i in range(N_MFCC)]
        + [f"contrast_{i}" for i in range(CONTRAST_BANDS)]
        + ["centroid", "flatness", "energy"]
    )


def _check_n_mels(n_mels: int) -> None:
    if n_mels < N_MFCC:
        raise ValueError(f"the classical features need at least {N_MFCC} mel bands, got {n_mels}")


def feature_names(n_mels: int = 128) -> list[str]:
    """Names of the columns of `recording_features`: per-frame means, then standard deviations."""
    _check_n_mels(n_mels)
    names = _descriptor_names()
    return [f"{name}_mean" for name in names] + [f"{name}_std" for name in names]


N_FEATURES = 2 * len(_descriptor_names())


def _dct_matrix(n_mels: int, n_out: int) -> np.ndarray:
    """[n_mels, n_out]: x @ D is the orthonormal DCT-II of x's rows, first n_out coefficients."""
    n = np.arange(n_mels)[:, None]
    k = np.arange(n_out)[None, :]
    basis = np.cos(np.pi * (2 * n + 1) * k / (2 * n_mels)) * np.sqrt(2.0 / n_mels)
    basis[:, 0] = np.sqrt(1.0 / n_mels)
    return basis


def _deltas(values: np.ndarray) -> np.ndarray:
    """First-order deltas of [frames, d] along time, as `librosa.feature.delta(width=9)`."""
    frames = values.shape[0]
    if frames >= DELTA_WIDTH:
        from scipy.signal import savgol_filter

        return savgol_filter(values, DELTA_WIDTH, polyorder=1, deriv=1, axis=0, mode="interp")
    if frames >= 2:
        return np.gradient(values, axis=0)
    return np.zeros_like(values)


def _contrast(log_mel_db: np.ndarray) -> np.ndarray:
    """[frames, CONTRAST_BANDS]: top-quantile mean minus bottom-quantile mean per sub-band, dB."""
    columns = []
    for band in np.array_split(log_mel_db, CONTRAST_BANDS, axis=1):
        ordered = np.sort(band, axis=1)
        k = max(1, int(np.rint(CONTRAST_QUANTILE * band.shape[1])))
        columns.append(ordered[:, -k:].mean(axis=1) - ordered[:, :k].mean(axis=1))
    return np.stack(columns, axis=1)


def _centroid_flatness(log_mel_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Power-weighted centroid (mel-band index) and flatness (dB) of each frame.

    Both are invariant to the frame's scale, so the power is taken relative to the frame's
    maximum: it lies in (0, 1] with at least one 1, so no sum is zero and nothing overflows.
    """
    relative_db = log_mel_db - log_mel_db.max(axis=1, keepdims=True)
    power = 10.0 ** (relative_db / 10.0)
    total = power.sum(axis=1)
    centroid = power @ np.arange(log_mel_db.shape[1], dtype=np.float64) / total
    flatness = relative_db.mean(axis=1) - 10.0 * np.log10(total / log_mel_db.shape[1])
    return centroid, np.minimum(flatness, 0.0)  # AM >= GM: only rounding can make it positive


def frame_descriptors(log_mel_db: np.ndarray) -> np.ndarray:
    """[frames, 50] per-frame descriptors of a log-mel [frames, n_mels] in dB (module docstring)."""
    x = np.asarray(log_mel_db, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f"expected a log-mel of shape [frames >= 1, n_mels], got {x.shape}")
    _check_n_mels(x.shape[1])
    if not np.all(np.isfinite(x)):
        raise ValueError("the log-mel holds NaN or infinite values")
    mfcc = x @ _dct_matrix(x.shape[1], N_MFCC)
    centroid, flatness = _centroid_flatness(x)
    return np.concatenate(
        [
            mfcc,
            _deltas(mfcc),
            _contrast(x),
            centroid[:, None],
            flatness[:, None],
            x.mean(axis=1, keepdims=True),
        ],
        axis=1,
    )


def recording_features(log_mel_db: np.ndarray) -> np.ndarray:
    """The recording's fixed-length vector [N_FEATURES] (float64): per-frame means, then stds."""
    descriptors = frame_descriptors(log_mel_db)
    return np.concatenate([descriptors.mean(axis=0), descriptors.std(axis=0)])


def split_features(
    split: SplitFeatures, progress: Callable[[int, int], None] | None = None
) -> np.ndarray:
    """[n_recordings, N_FEATURES] (float64), one cached recording in memory at a time.

    Each `.npy` of segments [n, segment_frames, n_mels] is memory-mapped and read as its
    contiguous log-mel [n * segment_frames, n_mels]. `progress(done, total)` is called after each.
    """
    rows = np.zeros((len(split.files), N_FEATURES), dtype=np.float64)
    for i, path in enumerate(split.files):
        segments = np.load(path, mmap_mode="r")
        if segments.ndim != 3 or segments.shape[0] < 1:
            raise ValueError(
                f"{path}: expected segments [n >= 1, frames, n_mels], got {segments.shape}"
            )
        try:
            rows[i] = recording_features(np.asarray(segments).reshape(-1, segments.shape[-1]))
        except ValueError as error:
            raise ValueError(f"{path}: {error}") from None
        del segments
        if progress is not None:
            progress(i + 1, len(split.files))
    return rows


class ClassicalBaseline:
    """StandardScaler + multinomial logistic regression (`CLASSIFIER`), deterministic.

    With `n_classes`, `predict_proba` has a column for every class id 0 .. n_classes - 1, zero for
    the classes the training data did not have; otherwise one column per class seen in `fit`.
    """

    def __init__(self, n_classes: int | None = None):
        self.n_classes = n_classes
        self.pipeline = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> ClassicalBaseline:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y)
        if x.ndim != 2 or len(x) != len(y) or len(x) == 0:
            raise ValueError(
                f"expected x [n >= 1, features] and y [n], got {x.shape} and {y.shape}"
            )
        present = np.unique(y)
        if len(present) < 2:
            raise ValueError(
                f"the training data has only one class ({present[0]}); a classifier needs two"
            )
        if self.n_classes is not None and (present.min() < 0 or present.max() >= self.n_classes):
            raise ValueError(f"class ids must lie in 0 .. {self.n_classes - 1}, got {present}")
        # lbfgs fits the multinomial (softmax) loss for three or more classes.
        self.pipeline = make_pipeline(StandardScaler(), LogisticRegression(**CLASSIFIER))
        self.pipeline.fit(x, y)
        return self

    @property
    def classes_(self) -> np.ndarray:
        """The class ids of `predict_proba`'s columns."""
        self._check_fitted()
        if self.n_classes is not None:
            return np.arange(self.n_classes)
        return self.pipeline.classes_

    def _check_fitted(self) -> None:
        if self.pipeline is None:
            raise RuntimeError("ClassicalBaseline is not fitted: call fit(x, y) first")

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self._check_fitted()
        seen = self.pipeline.predict_proba(np.asarray(x, dtype=np.float64))
        if self.n_classes is None:
            return seen
        probabilities = np.zeros((len(seen), self.n_classes), dtype=np.float64)
        probabilities[:, self.pipeline.classes_] = seen
        return probabilities

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(x), axis=1)]


def _split(prepared: PreparedDataset, name: str, genres: Sequence[str]) -> SplitFeatures:
    split = prepared.split(name)
    if len(split) == 0:
        raise ValueError(f"the {name!r} split has no recordings: the classical baseline needs some")
    labels = np.asarray(split.labels)
    if labels.min() < 0 or labels.max() >= len(genres):
        raise ValueError(f"the {name!r} split has label ids outside 0 .. {len(genres) - 1}")
    return split


def evaluate_baseline(
    prepared: PreparedDataset,
    genres: Sequence[str],
    train: str = "train",
    test: str = "test",
    progress: Callable[[str, int, int], None] | None = None,
) -> dict:
    """Trains the baseline on the `train` split alone and scores it on the `test` split's clips.

    The macro F1 averages the genres that occur in the test split (as the network's report does);
    `clip_level` is `scores.level_report` of the test clips, as in the network's report.
    `progress(split, done, total)` is called as features are computed.
    """
    from musicnext_tf.scores import level_report  # here, so the module loads on its own

    genres = list(genres)
    train_split = _split(prepared, train, genres)
    test_split = _split(prepared, test, genres)
    y_train = np.asarray(train_split.labels, dtype=np.int64)
    if len(np.unique(y_train)) < 2:
        raise ValueError(
            f"the {train!r} split has only one genre present ({genres[y_train[0]]!r}): "
            "the classical baseline needs at least two"
        )

    def features(name: str, split: SplitFeatures) -> np.ndarray:
        report = None if progress is None else (lambda done, total: progress(name, done, total))
        return split_features(split, report)

    model = ClassicalBaseline(len(genres)).fit(features(train, train_split), y_train)
    probabilities = model.predict_proba(features(test, test_split))
    predicted = np.argmax(probabilities, axis=1)
    truth = np.asarray(test_split.labels, dtype=np.int64)

    clip_level = level_report(truth, predicted, genres)
    return {
        "method": METHOD,
        "features": N_FEATURES,
        "train_clips": len(train_split),
        "test_clips": len(test_split),
        "clip_accuracy": clip_level["accuracy"],
        "macro_f1": clip_level["macro_average"]["f1"],
        "clip_level": clip_level,
        "predictions": [
            {
                "track_id": track_id,
                "true": genres[t],
                "predicted": genres[p],
                "probability": float(probabilities[i, p]),
            }
            for i, (track_id, t, p) in enumerate(zip(test_split.track_ids, truth, predicted))
        ],
    }


def markdown_section(result: dict) -> str:
    """The result of `evaluate_baseline` as a markdown section for the evaluation report."""
    from musicnext_tf.reporting import as_percent, markdown_table, scores_table

    summary = [
        ["clip accuracy", as_percent(result["clip_accuracy"])],
        ["macro F1", f"{result['macro_f1']:.3f}"],
    ]
    lines = [
        "## Classical baseline",
        "",
        f"Method: {result['method']} ({result['features']} features per recording; "
        f"{result['train_clips']} training clips, {result['test_clips']} test clips).",
        "",
        *markdown_table(["metric", "value"], summary),
        "",
        *scores_table(result["clip_level"]),
    ]
    return "\n".join(lines) + "\n"
