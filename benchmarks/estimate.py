"""How long the paper's GTZAN run takes on this machine, estimated from the measured figures.

The run: 1000 clips of 30 s, 10 segments each, split 8:2 (8000 training and 2000 test segments),
50 epochs at batch 50, the test split classified once at the end. The estimate adds the cold
prepare of 1000 GTZAN-like WAV clips (worker start-up, then the measured steady rate), 50 epochs
of training at the measured training step rate, and one pass of inference over the test
segments. Per-epoch bookkeeping (checkpoints, logs) is not counted.
"""

from __future__ import annotations

CLIPS = 1000
SEGMENTS_PER_CLIP = 10
TRAIN_SHARE = 0.8
EPOCHS = 50


def _details(figures, name_start: str) -> dict | None:
    return next((f.details for f in figures if f.name.startswith(name_start)), None)


def paper_run(figures) -> dict | None:
    """{"prepare_s", "training_s", "test_s", "total_h", "batch_size"} from the figures of the
    compute and prepare families, or None when either did not run."""
    training = _details(figures, "training FLOP/s")
    inference = _details(figures, "inference FLOP/s")
    wav = _details(figures, "cold prepare / librosa loop: wav")
    if not (training and inference and wav):
        return None
    train_segments = CLIPS * TRAIN_SHARE * SEGMENTS_PER_CLIP
    test_segments = CLIPS * (1 - TRAIN_SHARE) * SEGMENTS_PER_CLIP
    estimate = {
        "batch_size": training["batch_size"],
        "prepare_s": wav["first_entry_seconds"] + CLIPS / wav["ours"]["clips_per_s"],
        "training_s": EPOCHS * train_segments / training["segments_per_s"],
        "test_s": test_segments / inference["segments_per_s"],
    }
    estimate["total_h"] = sum(v for k, v in estimate.items() if k.endswith("_s")) / 3600
    return estimate


def describe(estimate: dict) -> str:
    return (
        f"paper run on this machine (50 epochs of GTZAN, 8000 training segments, batch "
        f"{estimate['batch_size']} as measured): prepare {estimate['prepare_s'] / 60:.1f} min + "
        f"training {estimate['training_s'] / 3600:.1f} h + test {estimate['test_s'] / 60:.1f} min "
        f"= {estimate['total_h']:.1f} h"
    )
