"""Open-set rejection: a score that says how much a clip looks like the genres the model learnt.

Three scores per clip are computed (numpy here, the same formulas in the graph in `inference`):

- "knn": the cosine similarity between the clip's embedding (the mean of its segments' pooled
  features, the head's input) and its `KNN_NEIGHBOURS`-th most similar training clip (Sun et al.
  2022, "Out-of-distribution detection with deep nearest neighbors"). The training clips' embeddings
  are kept with the calibration and exported with the model.
- "cosine": the largest cosine between the clip's embedding and the head's class weight vectors. L-softmax learns angular class
  regions, so music of a known genre points close to its class's direction, and anything else
  (noise, silence, speech, an unknown genre) points between them.
- "probability": the largest calibrated clip probability (maximum softmax probability).

The run keeps one (`DEFAULT_SCORE`, chosen by measurement: `docs/trust.md`) and a threshold set on
the validation split so that a stated share of in-distribution clips (`DEFAULT_ACCEPTANCE`) is
accepted; clips scoring below it are "unknown". Rejection quality is the AUROC of in-distribution
against out-of-distribution clips, and the share of out-of-distribution clips the threshold accepts
(the false-acceptance rate).
"""

from __future__ import annotations

import numpy as np

SCORES = ("knn", "cosine", "probability")
DEFAULT_SCORE = "knn"
KNN_NEIGHBOURS = 5
DEFAULT_ACCEPTANCE = 0.95
UNKNOWN = "unknown"  # the genre `predict` writes for a rejected clip


def cosine_scores(embeddings: np.ndarray, class_weights: np.ndarray) -> np.ndarray:
    """max_k cos(embedding, class_weights[:, k]) for every row of embeddings [n, features]
    (class_weights: the head's kernel, [features, classes])."""
    return (unit_rows(embeddings) @ unit_rows(np.asarray(class_weights).T).T).max(axis=1)


def unit_rows(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, np.float64)
    return values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)


def knn_scores(
    embeddings: np.ndarray, reference: np.ndarray, k: int = KNN_NEIGHBOURS
) -> np.ndarray:
    """The k-th largest cosine similarity of each embedding [n, features] to the reference
    embeddings [m, features] (k is capped at m)."""
    similarities = unit_rows(embeddings) @ unit_rows(reference).T
    k = min(k, similarities.shape[1])
    return np.sort(similarities, axis=1)[:, -k]


def clip_scores(
    score: str,
    embeddings: np.ndarray,
    probabilities: np.ndarray,
    class_weights: np.ndarray,
    reference: np.ndarray | None = None,
    neighbours: int = KNN_NEIGHBOURS,
) -> np.ndarray:
    """The `score` of every clip, from its mean embedding and its calibrated probabilities
    (`reference`: the training clips' embeddings, which "knn" compares with `neighbours`)."""
    if score == "knn":
        if reference is None or not len(reference):
            raise ValueError("the knn score needs the training clips' embeddings")
        return knn_scores(embeddings, reference, neighbours)
    if score == "cosine":
        return cosine_scores(embeddings, class_weights)
    if score == "probability":
        return np.asarray(probabilities, np.float64).max(axis=1)
    raise ValueError(f"unknown open-set score {score!r}; expected one of {SCORES}")


def acceptance_threshold(known_scores: np.ndarray, acceptance: float = DEFAULT_ACCEPTANCE) -> float:
    """The largest threshold that accepts (score >= threshold) at least `acceptance` of the
    in-distribution clips: their (1 - acceptance) lower quantile, taken at an observed score."""
    if not 0.0 < acceptance <= 1.0:
        raise ValueError(f"the acceptance rate must be in (0, 1], got {acceptance}")
    scores = np.sort(np.asarray(known_scores, np.float64))
    if not len(scores):
        raise ValueError("no in-distribution scores to set a threshold on")
    rejected = int(np.floor((1.0 - acceptance) * len(scores) + 1e-9))
    return float(scores[rejected])


def rejection_quality(
    known_scores: np.ndarray, unknown_scores: np.ndarray, threshold: float | None
) -> dict:
    """AUROC of known (positive) against unknown clips by score, and the shares of each that the
    threshold accepts; None entries where the threshold is None."""
    from sklearn.metrics import roc_auc_score

    known = np.asarray(known_scores, np.float64)
    unknown = np.asarray(unknown_scores, np.float64)
    truth = np.r_[np.ones(len(known)), np.zeros(len(unknown))]
    auroc = roc_auc_score(truth, np.r_[known, unknown]) if len(known) and len(unknown) else None
    return {
        "auroc": None if auroc is None else float(auroc),
        "false_acceptance": None if threshold is None else float(np.mean(unknown >= threshold)),
        "known_acceptance": None if threshold is None else float(np.mean(known >= threshold)),
        "known": int(len(known)),
        "unknown": int(len(unknown)),
    }
