"""Temperature scaling and the calibration figures, against independent numpy recomputations."""

from __future__ import annotations

import numpy as np
import pytest

from musicnext_tf.calibration import (
    ECE_BINS,
    Calibration,
    brier_score,
    calibration_figures,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    read_calibration,
    reliability_png,
    write_calibration,
)


def overconfident_classifier(rng, samples: int = 3000, classes: int = 5, scale: float = 4.0):
    """Logits of a calibrated classifier (labels drawn from softmax(true_logits)) multiplied by
    `scale`: its probabilities are over-confident by a known temperature."""
    true_logits = rng.normal(0.0, 1.5, size=(samples, classes))
    probabilities = np.exp(true_logits) / np.exp(true_logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(classes, p=row) for row in probabilities])
    return scale * true_logits, labels


def reference_ece(probabilities, labels, bins=ECE_BINS):
    """ECE written out as a loop over samples: bin b holds confidences in (b/bins, (b+1)/bins]."""
    totals = np.zeros(bins)
    hits = np.zeros(bins)
    confidence_sums = np.zeros(bins)
    for row, label in zip(probabilities, labels):
        confidence = row.max()
        b = min(bins - 1, max(0, int(np.ceil(confidence * bins)) - 1))
        totals[b] += 1
        hits[b] += row.argmax() == label
        confidence_sums[b] += confidence
    filled = totals > 0
    gaps = np.abs(hits[filled] / totals[filled] - confidence_sums[filled] / totals[filled])
    return float(np.sum(totals[filled] / totals.sum() * gaps))


def softmax_rows(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_figures_agree_with_a_numpy_recomputation(rng):
    logits, labels = overconfident_classifier(rng, samples=800)
    probabilities = softmax_rows(logits)
    figures = calibration_figures(probabilities, labels)
    assert figures["ece"] == pytest.approx(reference_ece(probabilities, labels), abs=1e-12)
    nll = -np.mean([np.log(row[label]) for row, label in zip(probabilities, labels)])
    assert figures["nll"] == pytest.approx(nll, rel=1e-12)
    brier = np.mean(
        [np.sum((row - np.eye(5)[label]) ** 2) for row, label in zip(probabilities, labels)]
    )
    assert figures["brier"] == pytest.approx(brier, rel=1e-12)
    assert figures["accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == labels))
    assert len(figures["bins"]) == ECE_BINS
    assert sum(row["count"] for row in figures["bins"]) == 800


def test_known_values_on_a_hand_made_example():
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 0, 1])
    # bins: 0.9 -> (13/15, 14/15]: 2 samples, accuracy 0.5; 0.6 -> (8/15, 9/15]: 1, acc 1;
    # 0.7 -> (10/15, 11/15]: 1, acc 1
    expected = (2 * abs(0.5 - 0.9) + abs(1 - 0.6) + abs(1 - 0.7)) / 4
    assert expected_calibration_error(probabilities, labels) == pytest.approx(expected)
    assert negative_log_likelihood(probabilities, labels) == pytest.approx(
        -np.mean(np.log([0.9, 0.1, 0.6, 0.7]))
    )
    assert brier_score(probabilities, labels) == pytest.approx(
        np.mean([0.02, 2 * 0.81, 0.32, 0.18])
    )


def test_the_fitted_temperature_undoes_overconfidence_and_ece_falls(rng):
    logits, labels = overconfident_classifier(rng)
    clips = np.arange(len(labels))  # one segment per clip
    temperature = fit_temperature(logits, clips, labels)
    assert temperature > 1.0
    assert temperature == pytest.approx(4.0, rel=0.15)
    before = calibration_figures(softmax_rows(logits), labels)
    after = calibration_figures(softmax_rows(logits / temperature), labels)
    assert after["ece"] < 0.5 * before["ece"]
    assert after["nll"] < before["nll"]
    assert after["accuracy"] == before["accuracy"]  # a temperature changes no segment's decision


def test_the_temperature_is_fitted_on_clip_means_of_segment_probabilities(rng):
    logits, labels = overconfident_classifier(rng, samples=1200)
    # three segments per clip sharing the clip's label: the clip-level NLL is what is minimised
    clips = np.repeat(np.arange(400), 3)
    clip_labels = labels[::3]
    temperature = fit_temperature(logits, clips, clip_labels)

    def clip_nll(t):
        segment = softmax_rows(logits / t)
        means = segment.reshape(400, 3, -1).mean(axis=1)
        return -np.mean(np.log(means[np.arange(400), clip_labels]))

    grid = np.exp(np.linspace(np.log(0.1), np.log(50), 400))
    best = grid[np.argmin([clip_nll(t) for t in grid])]
    assert temperature == pytest.approx(best, rel=0.03)


def test_a_calibrated_classifier_keeps_a_temperature_near_one(rng):
    logits, labels = overconfident_classifier(rng, scale=1.0)
    assert fit_temperature(logits, np.arange(len(labels)), labels) == pytest.approx(1.0, abs=0.15)


def test_reliability_diagram_is_a_png(rng):
    logits, labels = overconfident_classifier(rng, samples=300)
    before = calibration_figures(softmax_rows(logits), labels)
    after = calibration_figures(softmax_rows(logits / 4), labels)
    for picture in (reliability_png(before, after, "test"), reliability_png(before, None, "t")):
        assert picture.startswith(b"\x89PNG\r\n\x1a\n") and len(picture) > 5000


def test_stored_calibrations_round_trip_per_model(tmp_path):
    assert read_calibration(tmp_path, "best") is None
    best = Calibration(temperature=2.5, threshold=0.4, validation_clips=12, epoch=7)
    write_calibration(tmp_path, "best", best)
    write_calibration(tmp_path, "last", Calibration())
    assert read_calibration(tmp_path, "best") == best
    assert read_calibration(tmp_path, "last") == Calibration()
