"""Cold feature preparation against the loop a user would write, and its peak memory.

One corpus holds every format in its own folder (ROOT/mp3, ROOT/song, ROOT/wav), with the
ISMIR2004 clip rule: seconds 30-60 of a full-length song, and the whole of a 30 s clip (as the
"head" rule of GTZAN and Extended Ballroom would keep it).

Ours: `musicnext_tf.prepare.prepare` into an empty cache, in a child process, with one worker per
core (decode only the frames the clip rule keeps, mix to mono, resample, log-mel). Jobs run in the
corpus's order, folder after folder, so each format's throughput is the steady rate at which its
entries complete: its entries / (its last completion - the previous folder's last completion),
from the entries' file times. The first folder, `0-warmup` (songs), is not counted: while it runs
the workers finish starting (importing TensorFlow takes seconds, and they do not all start at
once). The user's loop, in this process: `librosa.load(path, sr=22050)` of the whole file, the
clip rule applied to the samples, `melspectrogram` and `power_to_db` (librosa warmed up on one file
first), on the same recordings.

Peak memory: the resident memory of the child and all its workers, sampled together every 20 ms,
for the corpus and for one ten times larger (more hard links to the same recordings); the
throughput is measured in the larger one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import librosa

from benchmarks.corpus import FORMATS, write_corpus
from benchmarks.features import librosa_log_mel
from benchmarks.prepare_child import folder_config
from benchmarks.results import Figure
from musicnext_tf.audio import clip_window
from musicnext_tf.config import ExperimentConfig
from musicnext_tf.workers import available_cores

FAMILY = "prepare"
LARGER = 10  # the peak-memory comparison's second corpus is this many times larger
WARMUP = "0-warmup"  # sorted first: the folder of songs the workers start on, not counted
WARMUP_PER_WORKER = 12  # songs: about 1.5 s of one worker's time
_SAMPLE_SECONDS = 0.02


def write_corpora(
    work: Path, clips: int, song_seconds: float
) -> tuple[dict[str, list[Path]], Path, Path]:
    """The corpus (CLIPS files per format, songs of SONG_SECONDS) and a LARGER times larger one,
    each with the warm-up folder; returns the corpus's {format: paths} and the two roots."""
    paths = {
        name: write_corpus(
            work / "corpus",
            fmt,
            clips,
            distinct=1,
            seconds=song_seconds if name == "song" else None,
        )
        for name, fmt in FORMATS.items()
    }
    roots = work / "corpus", work / "larger"
    warmup = {WARMUP: (paths["song"], WARMUP_PER_WORKER * available_cores())}
    for root, scale in zip(roots, (1, LARGER)):
        folders = {name: (paths[name], scale * clips) for name in FORMATS} | warmup
        for name, (sources, count) in folders.items():
            _link_copies(sources, root / name, count)
    return paths, *roots


def _link_copies(sources: list[Path], folder: Path, count: int) -> None:
    """COUNT hard links to SOURCES, in turn, in FOLDER (files already there are kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        source = sources[index % len(sources)]
        target = folder / f"{folder.name}-{index:05d}{source.suffix}"
        if not target.exists():
            os.link(source, target)


def librosa_loop(paths: list[Path], config: ExperimentConfig) -> dict:
    """The user's loop over PATHS; returns its timings."""

    def one(path):
        samples, rate = librosa.load(path, sr=config.audio.sample_rate)
        start, stop = clip_window(
            len(samples), rate, config.audio.clip_rule, config.audio.clip_seconds
        )
        return librosa_log_mel(samples[start:stop], config)

    one(paths[0])  # librosa's lazy imports and first-call compilation
    start = time.perf_counter()
    for path in paths:
        one(path)
    seconds = time.perf_counter() - start
    return {"clips": len(paths), "total_seconds": seconds, "clips_per_s": len(paths) / seconds}


def cold_prepare(root: Path, cache: Path) -> dict:
    """Runs a cold prepare of ROOT in a child process (`benchmarks.prepare_child`); returns its
    timings and peak memory."""
    command = [sys.executable, "-m", "benchmarks.prepare_child", str(root), str(cache)]
    peak, output = peak_tree_rss(command)
    return {**json.loads(output), "peak_rss_bytes": peak}


def run(clips: int, song_seconds: float) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="musicnext-bench-") as folder:
        work = Path(folder)
        paths, corpus, larger = write_corpora(work, clips, song_seconds)
        config = folder_config(corpus, work / "cache")
        ours = cold_prepare(corpus, work / "cache")
        # right before the measured run, so that both see the same load from other processes
        reference = {name: librosa_loop(files, config) for name, files in paths.items()}
        ours_larger = cold_prepare(larger, work / "cache-larger")
    figures = [
        Figure(
            FAMILY,
            f"cold prepare / librosa loop: {fmt.name} ({fmt.like}-like)",
            ours_larger["formats"][fmt.name]["clips_per_s"] / reference[fmt.name]["clips_per_s"],
            target=3.0,
            details={
                "format": vars(fmt),
                "ours": ours_larger["formats"][fmt.name],
                "librosa": reference[fmt.name],
                "first_entry_seconds": ours_larger["first_entry_seconds"],
                "workers": ours_larger["workers"],
            },
        )
        for fmt in FORMATS.values()
    ]
    small, large = (
        sum(rates["clips"] for rates in run["formats"].values()) for run in (ours, ours_larger)
    )
    peaks = {small: ours["peak_rss_bytes"], large: ours_larger["peak_rss_bytes"]}
    figures.append(
        Figure(
            FAMILY,
            f"prepare peak RSS {large} / {small} clips",
            peaks[large] / peaks[small],
            target=1.10,
            comparison="<=",
            details={"peak_rss_bytes": peaks, "workers": ours["workers"]},
            note=f"peak RSS of prepare and its {ours['workers']} workers, all formats (and "
            f"{WARMUP_PER_WORKER * ours['workers']} warm-up songs): {peaks[small] / 2**20:.0f} MB "
            f"at {small} clips, {peaks[large] / 2**20:.0f} MB at {large}; the first entry was "
            f"done {ours_larger['first_entry_seconds']:.1f} s after the start (worker start-up, "
            "not in the clips/s)",
        )
    )
    return figures


# ------------------------------------------------------------------------------------ peak memory


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of process PID and all its descendants (0 once it has gone)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            with open(f"/proc/{current}/status", encoding="ascii") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    pending += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def peak_tree_rss(command: list[str]) -> tuple[int, str]:
    """Runs COMMAND; returns the peak of the summed resident memory of it and its workers, and
    what it printed."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peak = 0

    def sample():
        nonlocal peak
        while process.poll() is None:
            peak = max(peak, tree_rss_bytes(process.pid))
            time.sleep(_SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, errors = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(
            f"{' '.join(command)} failed:\n{errors.decode(errors='replace')[-3000:]}"
        )
    return peak, output.decode()
