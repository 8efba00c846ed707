"""Open-set scores, thresholds and rejection quality, against direct recomputations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from musicnext_tf.open_set import (
    acceptance_threshold,
    clip_scores,
    cosine_scores,
    knn_scores,
    rejection_quality,
)


def test_cosine_scores_are_the_largest_cosine_to_a_class_vector(rng):
    embeddings = rng.normal(size=(20, 8))
    weights = rng.normal(size=(8, 4)) * rng.uniform(0.1, 10, size=4)  # norms must not matter
    expected = [
        max(e @ w / np.linalg.norm(e) / np.linalg.norm(w) for w in weights.T) for e in embeddings
    ]
    np.testing.assert_allclose(cosine_scores(embeddings, weights), expected, rtol=1e-12)
    np.testing.assert_allclose(cosine_scores(3 * embeddings, weights), expected, rtol=1e-12)
    # an embedding along a class vector scores 1
    assert cosine_scores(weights.T[:1] * 5, weights)[0] == pytest.approx(1.0)


def test_knn_scores_are_the_kth_largest_cosine_to_the_reference(rng):
    embeddings = rng.normal(size=(6, 8))
    reference = rng.normal(size=(12, 8))
    for k in (1, 5, 12, 30):  # k beyond the reference size takes the least similar
        expected = []
        for e in embeddings:
            cosines = [e @ r / np.linalg.norm(e) / np.linalg.norm(r) for r in reference]
            expected.append(sorted(cosines, reverse=True)[min(k, 12) - 1])
        np.testing.assert_allclose(knn_scores(embeddings, reference, k), expected, rtol=1e-12)
    assert clip_scores("knn", reference[:2], None, None, reference)[0] == pytest.approx(
        np.sort(reference[:1] @ reference.T / np.linalg.norm(reference, axis=1))[0, -5]
        / np.linalg.norm(reference[0])
    )
    with pytest.raises(ValueError, match="knn score needs the training clips' embeddings"):
        clip_scores("knn", embeddings, None, None, None)


def test_probability_score_and_unknown_score_names(rng):
    probabilities = rng.dirichlet(np.ones(3), size=6)
    np.testing.assert_allclose(
        clip_scores("probability", None, probabilities, None), probabilities.max(axis=1)
    )
    with pytest.raises(ValueError, match="'energy'.*knn.*cosine.*probability"):
        clip_scores("energy", None, probabilities, None)


@pytest.mark.parametrize("count", [1, 7, 20, 101])
@pytest.mark.parametrize("acceptance", [0.5, 0.9, 0.95, 1.0])
def test_threshold_accepts_the_stated_share_and_no_more_is_possible(rng, count, acceptance):
    scores = rng.normal(size=count)
    threshold = acceptance_threshold(scores, acceptance)
    assert threshold in scores
    assert np.mean(scores >= threshold) >= acceptance - 1e-12
    higher = scores[scores > threshold]
    if len(higher):  # the next observed score up would accept too few
        assert np.mean(scores >= higher.min()) < acceptance


def test_threshold_errors():
    with pytest.raises(ValueError, match="acceptance rate must be in"):
        acceptance_threshold([0.1, 0.2], 0.0)
    with pytest.raises(ValueError, match="no in-distribution scores"):
        acceptance_threshold([], 0.95)


def test_rejection_quality_counts_pairs_and_acceptances(rng):
    known = rng.normal(1.0, 1.0, size=30)
    unknown = rng.normal(0.0, 1.0, size=25)
    pairs = list(itertools.product(known, unknown))
    auroc = np.mean([1.0 if k > u else 0.5 if k == u else 0.0 for k, u in pairs])
    quality = rejection_quality(known, unknown, threshold=0.5)
    assert quality["auroc"] == pytest.approx(auroc)
    assert quality["false_acceptance"] == pytest.approx(np.mean(unknown >= 0.5))
    assert quality["known_acceptance"] == pytest.approx(np.mean(known >= 0.5))
    assert (quality["known"], quality["unknown"]) == (30, 25)
    separated = rejection_quality([2.0, 3.0], [0.0, 1.0], None)
    assert separated["auroc"] == 1.0 and separated["false_acceptance"] is None
