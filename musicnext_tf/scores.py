"""Scores of a set of predictions: accuracy, the confusion matrix (counted by `reporting`) and
per-genre precision, recall and F1 (scikit-learn). No TensorFlow: the network's evaluation and
the classical baseline report in the same form."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from musicnext_tf.reporting import confusion_counts, row_percent


def level_report(truth: np.ndarray, predicted: np.ndarray, genres: Sequence[str]) -> dict:
    """Confusion matrix and per-genre scores of one level (segments or clips).

    Rows of the confusion matrix are the true genres that occur (`rows`), columns all the model's
    genres; `confusion_percent` divides each row by its count, so every row sums to 100.
    """
    from sklearn.metrics import precision_recall_fscore_support

    classes = np.arange(len(genres))
    counts = confusion_counts(truth, predicted, len(genres))
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
        "confusion_percent": row_percent(counts[present]).tolist(),
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
