"""Deterministic synthesiser for the built-in `demo` genre dataset (no download needed).

Six genres (`DEMO_GENRES`) differ the way real ones do - in rhythm (tempo range, meter, swing, drum
pattern), timbre (sine pads, band-limited saw/square synths, Karplus-Strong plucked strings,
distorted power chords, noise cymbals, kick and snare) and harmony (triads, sevenths, power chords,
drones) - while every clip draws its own key, tempo, arrangement, instrument balance, tone colour,
background noise (10-30 dB SNR) and peak level, so no single trivial cue (loudness, one fixed
frequency) gives the genre away.

Everything is vectorised numpy. The modules, from the bottom up: `signals` (oscillators, envelopes,
filters), `instruments` (drums and pitched voices), `arrangement` (harmony, a clip's grid, stems
and mix), `genres` (one arranger per genre) and `render` (one clip; the dataset on disk). It lives
outside `musicnext_tf.datasets` so that listing datasets never imports it: `datasets.demo` imports
it only when the demo audio has to be checked or made.
"""

from musicnext_tf.demo_music.genres import DEMO_GENRES
from musicnext_tf.demo_music.render import (
    GENERATOR_VERSION,
    VERSION_FILE,
    synthesize_clip,
    write_demo_dataset,
)

__all__ = [
    "DEMO_GENRES",
    "GENERATOR_VERSION",
    "VERSION_FILE",
    "synthesize_clip",
    "write_demo_dataset",
]
