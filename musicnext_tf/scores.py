"""Scores of a set of predictions: confusion matrices (counts and percent) and per-genre
precision, recall and F1 (scikit-learn). No TensorFlow: the network's evaluation and the
classical baseline report in the same form."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def level_report(truth: np.ndarray, predicted: np.ndarray, genres: Sequence[str]) -> dict:
    """Confusion matrix and per-genre scores of one level (segments or clips).

    Rows of the confusion matrix are the true genres that occur (`rows`), columns all the model's
    genres; `confusion_percent` divides each row by its count, so every row sums to 100.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    classes = np.arange(len(genres))
    counts = confusion_matrix(truth, predicted, labels=classes)
    present = counts.sum(axis=1) > 0
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=classes, zero_division=0
    )
    macro = precision_recall_fscore_support(
        truth, predicted, labels=classes[present], average="macro", zero_division=0
    )
    return {
        "accuracy": float(np.mean(truth == predicted)),
        "rows": [genres[i] for i in classes[present]],
        "columns": list(genres),
        "confusion_counts": counts[present].tolist(),
        "confusion_percent": (
            100.0 * counts[present] / counts[present].sum(axis=1, keepdims=True)
        ).tolist(),
        "per_genre": {
            genre: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, genre in enumerate(genres)
        },
        "macro_average": {
            "precision": float(macro[0]),
            "recall": float(macro[1]),
            "f1": float(macro[2]),
        },
    }
