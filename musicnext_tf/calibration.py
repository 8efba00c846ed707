"""Temperature scaling and the calibration figures: ECE, NLL, Brier score and reliability diagrams.

A trained network's probabilities are usually over-confident; dividing its logits by one fitted
temperature T > 1 (Guo et al. 2017, "On calibration of modern neural networks") makes the
confidence match the accuracy without changing any decision.

The temperature is fitted at the clip level: a clip's probabilities are the mean of its segments'
softmax(logits / T), exactly what `predict` and the exported signatures output, and it is those a
user reads. Averaging segments already softens the probabilities, so a temperature fitted on single
segments would over-correct the clip probabilities. It is fitted on the validation split (never on
the test split it is judged on) by minimising the clip-level negative log-likelihood over log T.

Figures (all numpy, on probabilities [n, classes] and true labels [n]):

- ECE: expected calibration error of the top label, 15 equal-width confidence bins,
  sum over bins of |bin| / n * |accuracy(bin) - mean confidence(bin)|;
- NLL: mean of -log p(true class);
- Brier: mean over rows of sum_k (p_k - [k == true])^2 (0 is perfect, 2 the worst).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from musicnext_tf.files import atomic_file, write_json
from musicnext_tf.reporting import figure_png

ECE_BINS = 15
CALIBRATION_FILE = "calibration.json"  # in the run folder: {"best": {...}, "last": {...}}
REFERENCE_FILE = "calibration-{which}-reference.npy"  # the training clips' embeddings
TEMPERATURE_BOUNDS = (0.05, 100.0)
MIN_PROBABILITY = 1e-12  # the NLL's floor: a hard zero would make it infinite


@dataclass(frozen=True)
class Calibration:
    """What a run's model needs to turn its logits into trustworthy outputs.

    Attributes:
        temperature: the logits are divided by it before the softmax (1.0: uncalibrated).
        score: the open-set score `is_known` thresholds (`open_set.SCORES`).
        threshold: clips scoring below it are "unknown"; None: every clip is known.
        acceptance: the share of in-distribution validation clips the threshold accepts.
        validation_clips: how many clips the temperature and threshold were fitted on (0: none).
        epoch: the epoch of the model it was fitted for.
        neighbours: k of the "knn" score: 5, or fewer when a genre has fewer training clips
            (a clip must be able to find all k neighbours in its own genre).
        reference: float32 [training clips, features], the training clips' mean embeddings that
            the "knn" score compares with (stored beside the JSON as a .npy file).
    """

    temperature: float = 1.0
    score: str = "knn"
    threshold: float | None = None
    acceptance: float = 0.95
    validation_clips: int = 0
    epoch: int | None = None
    neighbours: int = 5
    reference: np.ndarray | None = field(default=None, repr=False, compare=False)

    def record(self) -> dict:
        """Everything but the reference embeddings (for JSON)."""
        return {name: value for name, value in asdict(self).items() if name != "reference"}


def tempered_softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """softmax(logits / temperature) along the last axis, in float64."""
    scaled = np.asarray(logits, np.float64) / temperature
    scaled -= scaled.max(axis=-1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=-1, keepdims=True)


def clip_probabilities(probabilities: np.ndarray, clips: np.ndarray, num_clips: int) -> np.ndarray:
    """Mean of the segment probabilities of each clip: [clips, classes] (float64)."""
    sums = np.zeros((num_clips, probabilities.shape[1]), np.float64)
    np.add.at(sums, clips, probabilities)
    counts = np.bincount(clips, minlength=num_clips)[:, None]
    return sums / np.maximum(counts, 1)


def negative_log_likelihood(probabilities: np.ndarray, labels: np.ndarray) -> float:
    true = probabilities[np.arange(len(labels)), labels]
    return float(-np.mean(np.log(np.maximum(true, MIN_PROBABILITY))))


def brier_score(probabilities: np.ndarray, labels: np.ndarray) -> float:
    one_hot = np.eye(probabilities.shape[1])[labels]
    return float(np.mean(np.sum((probabilities - one_hot) ** 2, axis=1)))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> list:
    """Per equal-width bin of top-label confidence ((lower, upper], the first bin [0, upper]):
    its bounds, count, accuracy and mean confidence (None for an empty bin)."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        count = int(members.sum())
        rows.append(
            {
                "lower": b / bins,
                "upper": (b + 1) / bins,
                "count": count,
                "accuracy": float(correct[members].mean()) if count else None,
                "confidence": float(confidence[members].mean()) if count else None,
            }
        )
    return rows


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Top-label ECE over `ECE_BINS` equal-width bins."""
    rows = reliability_bins(probabilities, labels)
    total = sum(row["count"] for row in rows)
    return float(
        sum(row["count"] * abs(row["accuracy"] - row["confidence"]) for row in rows if row["count"])
        / max(total, 1)
    )


def calibration_figures(probabilities: np.ndarray, labels: np.ndarray) -> dict:
    """ECE, NLL, Brier score, accuracy, mean confidence and the reliability bins."""
    probabilities = np.asarray(probabilities, np.float64)
    labels = np.asarray(labels)
    return {
        "ece": expected_calibration_error(probabilities, labels),
        "nll": negative_log_likelihood(probabilities, labels),
        "brier": brier_score(probabilities, labels),
        "accuracy": float(np.mean(probabilities.argmax(axis=1) == labels)),
        "mean_confidence": float(np.mean(probabilities.max(axis=1))),
        "bins": reliability_bins(probabilities, labels),
    }


def fit_temperature(logits: np.ndarray, clips: np.ndarray, clip_labels: np.ndarray) -> float:
    """The temperature minimising the clip-level NLL of the mean tempered segment probabilities.

    Args:
        logits: [segments, classes] plain logits.
        clips: [segments] the clip index of every segment.
        clip_labels: [clips] the true class of every clip.
    """
    from scipy.optimize import minimize_scalar

    def clip_nll(log_temperature: float) -> float:
        segment = tempered_softmax(logits, float(np.exp(log_temperature)))
        return negative_log_likelihood(
            clip_probabilities(segment, clips, len(clip_labels)), clip_labels
        )

    low, high = np.log(TEMPERATURE_BOUNDS)
    result = minimize_scalar(
        clip_nll, bounds=(low, high), method="bounded", options={"xatol": 1e-4}
    )
    return float(np.exp(result.x))


def reliability_png(before: dict, after: dict | None, title: str) -> bytes:
    """A reliability diagram (accuracy against confidence per bin, with the diagonal of perfect
    calibration) of `calibration_figures` before and, when given, after calibration; raises
    ImportError without matplotlib."""
    panels = [("uncalibrated", before)] + ([("calibrated", after)] if after else [])

    def draw(figure) -> None:
        for axes, (name, figures) in zip(figure.subplots(1, len(panels), squeeze=False)[0], panels):
            bins = figures["bins"]
            width = bins[0]["upper"] - bins[0]["lower"]
            filled = [row for row in bins if row["count"]]
            axes.bar(
                [row["lower"] for row in filled],
                [row["accuracy"] for row in filled],
                width=width,
                align="edge",
                edgecolor="black",
                color="tab:blue",
                label="accuracy",
            )
            axes.bar(
                [row["lower"] for row in filled],
                [row["confidence"] - row["accuracy"] for row in filled],
                bottom=[row["accuracy"] for row in filled],
                width=width,
                align="edge",
                color="tab:red",
                alpha=0.3,
                label="gap to confidence",
            )
            axes.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
            axes.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top genre)", ylabel="accuracy")
            axes.set_title(
                f"{name}: ECE {figures['ece']:.3f}, NLL {figures['nll']:.3f}", fontsize=9
            )
            axes.legend(loc="upper left", fontsize=7)

    return figure_png(draw, (4.2 * len(panels), 4.4), title, dpi=110)


def read_calibration(run_dir: str | os.PathLike, which: str) -> Calibration | None:
    """The calibration stored for the run's `which` ("best" or "last") model, or None."""
    path = Path(run_dir) / CALIBRATION_FILE
    if not path.is_file():
        return None
    entry = json.loads(path.read_text()).get(which)
    if not entry:
        return None
    reference = Path(run_dir) / REFERENCE_FILE.format(which=which)
    return Calibration(**entry, reference=np.load(reference) if reference.is_file() else None)


def write_calibration(run_dir: str | os.PathLike, which: str, calibration: Calibration) -> Path:
    """Stores the calibration of the run's `which` model (the other model's entry is kept)."""
    path = Path(run_dir) / CALIBRATION_FILE
    if calibration.reference is not None:
        with atomic_file(Path(run_dir) / REFERENCE_FILE.format(which=which)) as handle:
            np.save(handle, np.asarray(calibration.reference, np.float32))
    document = json.loads(path.read_text()) if path.is_file() else {}
    document[which] = calibration.record()
    write_json(path, document)
    return path
