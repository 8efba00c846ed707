"""How far a run's outputs can be trusted: calibrating its model and measuring the result.

`fit` (at its end) and `evaluate` use it in three steps:

1. `calibrate`: on the validation split, fit the temperature (`calibration.fit_temperature`, clip
   level) and the open-set threshold that accepts `acceptance` of the validation clips
   (`open_set.acceptance_threshold`); stored in `RUN_DIR/calibration.json`, then used by `predict`
   and the export. Without a validation split the model stays uncalibrated (temperature 1, no
   threshold) and the report says so.
2. `calibration_section`: ECE, NLL and Brier score of the test clips and segments before and after.
3. `open_set_section`: the AUROC and false-acceptance rate of the test clips (known) against
   out-of-distribution clips (unknown): generated white and pink noise, silence and speech
   (`probes`), and any recordings of genres the model never learnt (`evaluate --unknown DIR`).
   Both scores of `open_set.SCORES` are reported, each with its own validation threshold, so the
   choice of score stays a measured one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from musicnext_tf.calibration import (
    Calibration,
    calibration_figures,
    clip_probabilities,
    fit_temperature,
    tempered_softmax,
)
from musicnext_tf.open_set import (
    DEFAULT_ACCEPTANCE,
    DEFAULT_SCORE,
    KNN_NEIGHBOURS,
    SCORES,
    acceptance_threshold,
    clip_scores,
    rejection_quality,
)
from musicnext_tf.reporting import markdown_table

CALIBRATION_FIGURES = ("ece", "nll", "brier", "accuracy", "mean_confidence")  # the table's columns
PROBES_PER_KIND = 10  # generated clips per kind of out-of-distribution probe
CLIPS_PER_BATCH = 8  # waveforms classified at once (memory: 8 x `SEGMENTS_PER_STEP` segments)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitOutputs:
    """A model's outputs on every segment of a split.

    Attributes:
        logits: [segments, classes] plain logits; embeddings: [segments, features] pooled features.
        clips: [segments] the clip index of each segment; clip_labels: [clips] true class ids.
    """

    logits: np.ndarray
    embeddings: np.ndarray
    clips: np.ndarray
    clip_labels: np.ndarray

    def probabilities(self, temperature: float = 1.0) -> np.ndarray:
        """Clip probabilities: the mean of the segments' softmax(logits / temperature)."""
        segment = tempered_softmax(self.logits, temperature)
        return clip_probabilities(segment, self.clips, len(self.clip_labels))

    def clip_embeddings(self) -> np.ndarray:
        return clip_probabilities(self.embeddings, self.clips, len(self.clip_labels))

    def scores(self, score: str, calibration: Calibration, class_weights: np.ndarray) -> np.ndarray:
        return clip_scores(
            score,
            self.clip_embeddings(),
            self.probabilities(calibration.temperature),
            class_weights,
            calibration.reference,
            calibration.neighbours,
        )


def calibrate(
    training: SplitOutputs,
    validation: SplitOutputs | None,
    class_weights: np.ndarray,
    epoch: int | None = None,
    score: str = DEFAULT_SCORE,
    acceptance: float = DEFAULT_ACCEPTANCE,
) -> Calibration:
    """The temperature and threshold fitted on the validation outputs (None: uncalibrated), and
    the training clips' embeddings for the "knn" score."""
    uncalibrated = Calibration(
        score=score,
        acceptance=acceptance,
        epoch=epoch,
        neighbours=int(min(KNN_NEIGHBOURS, np.bincount(training.clip_labels).min())),
        reference=training.clip_embeddings().astype(np.float32),
    )
    if validation is None or not len(validation.clip_labels):
        log.warning(
            "no validation split ([data] validation_fraction = 0): the probabilities stay "
            "uncalibrated and no open-set threshold is set (every clip is known)"
        )
        return uncalibrated
    tempered = replace(
        uncalibrated,
        temperature=fit_temperature(validation.logits, validation.clips, validation.clip_labels),
        validation_clips=int(len(validation.clip_labels)),
    )
    threshold = acceptance_threshold(validation.scores(score, tempered, class_weights), acceptance)
    return replace(tempered, threshold=threshold)


def calibration_section(test: SplitOutputs, calibration: Calibration) -> dict:
    """Calibration figures of the test clips and segments, before and after the temperature."""
    segment_labels = test.clip_labels[test.clips]
    section = {
        "temperature": calibration.temperature,
        "fitted_on": "validation clips" if calibration.validation_clips else None,
        "validation_clips": calibration.validation_clips,
    }
    for level, probabilities, labels in (
        ("clip", test.probabilities, test.clip_labels),
        ("segment", lambda t: tempered_softmax(test.logits, t), segment_labels),
    ):
        section[level] = {"before": calibration_figures(probabilities(1.0), labels)}
        if calibration.validation_clips:
            after = probabilities(calibration.temperature)
            section[level]["after"] = calibration_figures(after, labels)
    return section


def open_set_section(
    test: SplitOutputs,
    validation: SplitOutputs | None,
    calibration: Calibration,
    class_weights: np.ndarray,
    unknown: Mapping[str, Mapping[str, np.ndarray]],
) -> dict:
    """Rejection quality of each score on each out-of-distribution set.

    Args:
        unknown: {set name: {"embedding": [clips, features], "probabilities": [clips, classes]}}
            of out-of-distribution clips, probabilities at the calibration's temperature.
    """
    section = {
        "score": calibration.score,
        "threshold": calibration.threshold,
        "acceptance": calibration.acceptance,
        "scores": {},
    }
    for score in SCORES:
        threshold = calibration.threshold if score == calibration.score else None
        if threshold is None and validation is not None and len(validation.clip_labels):
            validation_scores = validation.scores(score, calibration, class_weights)
            threshold = acceptance_threshold(validation_scores, calibration.acceptance)
        if score == "knn" and calibration.reference is None:
            continue  # a calibration stored before the knn score existed
        known = test.scores(score, calibration, class_weights)
        per_set = {}
        for name, outputs in unknown.items():
            scores = clip_scores(
                score,
                outputs["embedding"],
                outputs["probabilities"],
                class_weights,
                calibration.reference,
                calibration.neighbours,
            )
            per_set[name] = rejection_quality(known, scores, threshold)
        section["scores"][score] = {
            "threshold": threshold,
            "known_acceptance": None if threshold is None else float(np.mean(known >= threshold)),
            "sets": per_set,
        }
    return section


def classify_waveforms(clip_classifier, waveforms: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """The mean embedding and calibrated probabilities of each waveform, through the graph
    `predict` and the export use; waveforms of equal length go through it as one batch."""
    by_length: dict[int, list[int]] = {}
    for index, waveform in enumerate(waveforms):
        by_length.setdefault(len(waveform), []).append(index)
    embeddings: list = [None] * len(waveforms)
    probabilities: list = [None] * len(waveforms)
    groups = [
        indices[start : start + CLIPS_PER_BATCH]
        for indices in by_length.values()
        for start in range(0, len(indices), CLIPS_PER_BATCH)
    ]
    for indices in groups:
        batch = np.stack([np.asarray(waveforms[i], np.float32) for i in indices])
        outputs = clip_classifier.classify_waveform(batch)
        for row, index in enumerate(indices):
            embeddings[index] = outputs["embedding"][row]
            probabilities[index] = outputs["probabilities"][row]
    return {"embedding": np.stack(embeddings), "probabilities": np.stack(probabilities)}


def markdown_section(report: dict) -> str:
    """The calibration and open-set parts of an evaluation report as markdown."""
    lines = []
    calibration = report.get("calibration")
    if calibration:
        lines += ["## Calibration (top-label ECE with 15 bins, NLL, Brier score)", ""]
        if not calibration["validation_clips"]:
            lines += ["No validation split: the figures are uncalibrated.", ""]
        else:
            lines += [
                f"Temperature {calibration['temperature']:.3f}, fitted on "
                f"{calibration['validation_clips']} validation clips (clip-level NLL).",
                "",
            ]
        rows = [
            [level, stage, *(figures[key] for key in CALIBRATION_FIGURES)]
            for level in ("clip", "segment")
            for stage, figures in calibration[level].items()
        ]
        header = ["level", "", "ECE", "NLL", "Brier", "accuracy", "mean confidence"]
        lines += [*markdown_table(header, rows, align="llrrrrr", floats=".4f"), ""]
    open_set = report.get("open_set")
    if open_set:
        lines += [
            "## Open-set rejection (known: the test clips; unknown: each set below)",
            "",
            f"The model's score: {open_set['score']}, threshold "
            + (
                f"{open_set['threshold']:.4f} (accepts {100 * open_set['acceptance']:.0f} % of "
                "the validation clips)."
                if open_set["threshold"] is not None
                else "none (no validation split: every clip is known)."
            ),
            "",
        ]
        rows = [
            [score, name, quality["unknown"]]
            + [_figure(quality[key]) for key in ("auroc", "false_acceptance", "known_acceptance")]
            for score, results in open_set["scores"].items()
            for name, quality in results["sets"].items()
        ]
        header = ["score", "unknown set", "clips", "AUROC", "false acceptance", "known acceptance"]
        lines += [*markdown_table(header, rows, align="llrrrr"), ""]
    return "\n".join(lines)


def summary_lines(report: dict) -> list[str]:
    """A few terminal lines: ECE before and after, and the chosen score's AUROC per set."""
    lines = []
    calibration = report.get("calibration")
    if calibration:
        clip = calibration["clip"]
        text = f"  calibration: clip ECE {clip['before']['ece']:.4f}"
        if "after" in clip:
            text += (
                f" -> {clip['after']['ece']:.4f} at temperature {calibration['temperature']:.3f}"
            )
        else:
            text += " (uncalibrated: no validation split)"
        lines.append(text)
    open_set = report.get("open_set")
    if open_set:
        chosen = open_set["scores"][open_set["score"]]["sets"]
        aurocs = ", ".join(f"{name} {_figure(q['auroc'])}" for name, q in chosen.items())
        lines.append(f"  open-set AUROC ({open_set['score']} score): {aurocs}")
    return lines


def trust_metrics(report: dict) -> dict:
    """The calibration and open-set figures of a report that a run's `metrics.json` keeps."""
    calibration, open_set = report["calibration"], report["open_set"]
    clip = calibration["clip"]
    chosen = open_set["scores"][open_set["score"]]
    return {
        "temperature": calibration["temperature"],
        "test_clip_ece": clip["before"]["ece"],
        "test_clip_ece_calibrated": clip["after"]["ece"] if "after" in clip else None,
        "open_set_score": open_set["score"],
        "open_set_threshold": open_set["threshold"],
        "open_set_auroc": {name: quality["auroc"] for name, quality in chosen["sets"].items()},
    }


def _figure(value) -> str:
    return "-" if value is None else f"{value:.3f}"
