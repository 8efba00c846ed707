"""Genre over time: each segment's time span and calibrated probabilities, as CSV, JSON or a PNG.

A song whose style changes gets one label from `predict`; its timeline shows where it changes.
Segments are the model's own (consecutive, non-overlapping, `segment_frames * hop_length` samples
each, from the start of the classified audio), so a timeline holds exactly what the clip's mean
was computed from. `predict --timeline DIR [--plot]` writes one file per recording:

    DIR/<recording>.timeline.csv    start_s, end_s, genre (the segment's most probable), p_<genre>...
    DIR/<recording>.timeline.json   {"path", "genres", "segments": [{"start_s", "end_s", ...}]}
    DIR/<recording>.timeline.png    a heat strip: genres (rows) against time, colour = probability
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from musicnext_tf.files import atomic_write
from musicnext_tf.reporting import figure_png

FORMATS = ("csv", "json")


@dataclass(frozen=True)
class Timeline:
    """One recording's segments: `start_s`, `end_s` [segments] and `probabilities`
    [segments, classes] in the model's genre order."""

    start_s: np.ndarray
    end_s: np.ndarray
    probabilities: np.ndarray

    def top_genres(self, genres: Sequence[str]) -> list[str]:
        return [genres[index] for index in self.probabilities.argmax(axis=1)]


def timeline_csv(timeline: Timeline, genres: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["start_s", "end_s", "genre"] + [f"p_{genre}" for genre in genres])
    for start, end, top, row in zip(
        timeline.start_s, timeline.end_s, timeline.top_genres(genres), timeline.probabilities
    ):
        writer.writerow([f"{start:.3f}", f"{end:.3f}", top] + [f"{p:.6g}" for p in row])
    return buffer.getvalue()


def timeline_json(timeline: Timeline, genres: Sequence[str], path: str) -> str:
    segments = [
        {
            "start_s": round(float(start), 3),
            "end_s": round(float(end), 3),
            "genre": top,
            "probabilities": {genre: float(p) for genre, p in zip(genres, row)},
        }
        for start, end, top, row in zip(
            timeline.start_s, timeline.end_s, timeline.top_genres(genres), timeline.probabilities
        )
    ]
    return json.dumps({"path": path, "genres": list(genres), "segments": segments}, indent=2) + "\n"


def timeline_png(timeline: Timeline, genres: Sequence[str], title: str) -> bytes:
    """A heat strip of the genre probabilities over time (rows: genres, columns: segments), with
    each segment's most probable genre marked; raises ImportError without matplotlib."""
    end = float(timeline.end_s[-1]) if len(timeline.end_s) else 1.0
    start = float(timeline.start_s[0]) if len(timeline.start_s) else 0.0

    def draw(figure) -> None:
        axes = figure.add_subplot()
        image = axes.imshow(
            timeline.probabilities.T,
            aspect="auto",
            interpolation="nearest",
            cmap="magma",
            vmin=0.0,
            vmax=1.0,
            origin="lower",
            extent=(start, end, -0.5, len(genres) - 0.5),
        )
        middles = (timeline.start_s + timeline.end_s) / 2
        axes.plot(
            middles,
            timeline.probabilities.argmax(axis=1),
            "o",
            color="cyan",
            markersize=3,
            label="most probable",
        )
        axes.set_yticks(range(len(genres)), genres)
        axes.set_xlabel("time (s)")
        axes.set_title(f"{title} (dots: each segment's most probable genre)", fontsize=10)
        figure.colorbar(image, ax=axes, label="probability", pad=0.01)

    return figure_png(draw, (9.0, 1.2 + 0.32 * len(genres)), dpi=110)


def timeline_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """A distinct file name stem per recording: its name, with -2, -3... for repeated names."""
    seen: dict[str, int] = {}
    names = []
    for path in paths:
        name = Path(path).name
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return names


def write_timeline(
    timeline: Timeline,
    genres: Sequence[str],
    path: str,
    directory: str | os.PathLike,
    name: str,
    format: str = "csv",
    plot: bool = False,
) -> list[Path]:
    """Writes `name`.timeline.csv or .json (and with `plot` the .png) into `directory`."""
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {format!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    table = directory / f"{name}.timeline.{format}"
    text = (
        timeline_csv(timeline, genres) if format == "csv" else timeline_json(timeline, genres, path)
    )
    atomic_write(table, text.encode("utf-8"))
    written = [table]
    if plot:
        picture = directory / f"{name}.timeline.png"
        atomic_write(picture, timeline_png(timeline, genres, f"{Path(path).name}: genre over time"))
        written.append(picture)
    return written
