"""What the MusicNeXt paper reports, to put beside our sweeps' results.

Source: Meng et al., "MusicNeXt: Addressing category bias in fused music using musical features and
genre-sensitive adjustment layer", Intelligent Data Analysis 28(4), 2024. The figures' values and
most table cells were lost in the text we have; only the numbers written in its prose are kept
here, and everything else is "not reported". Figures 4, 5, 7 and 8 and tables 6 and 7 contribute
only their stated findings (`FINDINGS`).
"""

from __future__ import annotations

from musicnext_tf.config import ModelConfig

NOT_REPORTED = "not reported"
PAPER_DATASETS = ("gtzan", "ismir2004", "extended_ballroom")

# Test accuracy (%) of MusicNeXt with L-softmax (the paper's model), tables 2-5 and their text:
# "reaching 92.45%, 92.13%, and 95.82% respectively".
MUSICNEXT_ACCURACY = {"gtzan": 92.45, "ismir2004": 92.13, "extended_ballroom": 95.82}

# FusionNet (Ng et al.) with the mel spectrogram as its only feature on ISMIR2004, table 3's text;
# not a network of ours, quoted in docs/reproducing.md for context.
FUSIONNET_MEL_ISMIR2004 = 86.42

# The paper's model: ConvNeXt-T's stacking ratio and widths with the L-softmax head. Its margin was
# lost in the text, so a margin sweep has no reported point.
PAPER_MODEL = {
    "architecture": "musicnext",
    "head": "lsoftmax",
    "depths": [3, 3, 9, 3],
    "widths": [96, 192, 384, 768],
}

# What each figure or table shows, in the paper's words where it gives them.
FINDINGS = {
    "figure 4": "L-softmax reaches a higher accuracy than softmax over the epochs (values not "
    "reported in the text).",
    "figure 5": "accuracy of MusicNeXt under different angular margins on GTZAN, ISMIR2004 and "
    "Extended Ballroom; the chosen margin and the values were lost in the text.",
    "figure 7": "the 3:3:9:3 stacking ratio is best for both MusicNeXt and MusicNeXt with softmax "
    "on all three datasets; more stage-3 blocks help up to a point, too many hurt.",
    "table 5": "networks with L-softmax generally beat the same networks with softmax; MusicNeXt "
    "with L-softmax is best (only its accuracies are given in the text).",
    "figure 8": "on GTZAN, MusicNeXt's training loss falls faster than MusicNeXt-S's (softmax) "
    "and the baselines' (values not reported in the text).",
    "tables 6-7": "other studies misclassify many GTZAN genres as rock; the confusion matrices of "
    "MusicNeXt with softmax (table 6) and with L-softmax (table 7) show the paper's model reducing "
    "this bias towards one genre (the matrices' values were lost in the text).",
}


def is_paper_model(model: ModelConfig) -> bool:
    """Whether a run's network is the one the paper reports accuracies for (any margin)."""
    return all(getattr(model, key) == value for key, value in PAPER_MODEL.items())


def paper_accuracy(dataset: str, model: ModelConfig) -> float | None:
    """The paper's test accuracy (%) for this dataset and network, None where it reports none."""
    if not is_paper_model(model):
        return None
    return MUSICNEXT_ACCURACY.get(dataset)
