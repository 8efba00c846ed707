"""Tiny copies of the real dataset layouts, built from the real metadata in tests/data/.

Index-level fixtures hold empty audio files under the real names (loaders never decode); tests
that decode write real audio into the few files they use.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import soundfile

DATA = Path(__file__).parent / "data"
ISMIR_SETS = ("training", "development", "evaluation")
PACKAGE_DATA = Path(__file__).parents[1] / "musicnext_tf" / "datasets" / "data"
# the genres as the real fault-filtered list names them (`blues/blues.00029.wav`)
GTZAN_GENRES = tuple(
    sorted(
        {
            line.split("/")[0]
            for line in (PACKAGE_DATA / "gtzan_train_filtered.txt").read_text().split()
        }
    )
)


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


def ismir2004_copy(parent: Path) -> Path:
    """`parent/ismir04_genre/` with the real tracklists and every audio file that the real
    download's `filenames.txt` lists (so the real metadata faults are there), all empty."""
    root = parent / "ismir04_genre"
    for set_name in ISMIR_SETS:
        target = root / "metadata" / set_name / "tracklist.csv"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(DATA / "ismir2004" / f"{set_name}_tracklist.csv", target)
    for line in (DATA / "ismir2004" / "filenames.txt").read_text(encoding="utf-8").splitlines():
        if line.startswith("./audio/"):
            _touch(root / line[2:])
    for name in ("README.txt", "LICENSE.txt", "filenames.txt"):
        (root / name).write_text("fixture\n")
    return root


def gtzan_copy(root: Path, suffix: str = ".au", skip: tuple[str, ...] = ()) -> Path:
    """`root/<genre>/<genre>.000NN<suffix>` for the 1000 clips (minus the `skip` clip ids), empty,
    and the Marsyas list `bextract_single.mf` beside them."""
    listed = []
    for genre in GTZAN_GENRES:
        for number in range(100):
            clip = f"{genre}/{genre}.{number:05d}"
            listed.append(f"{root.name}/{clip}.au\t{genre}")
            if clip not in skip:
                _touch(root / f"{clip}{suffix}")
    (root / "bextract_single.mf").write_text("\n".join(listed) + "\n")
    return root


def extended_ballroom_songs() -> list[tuple[str, str]]:
    """(genre, song id) of every song of the real XML, in its order."""
    ballroom = ElementTree.parse(DATA / "extended_ballroom" / "extendedballroom_v1.1.xml")
    return [(genre.tag, song.get("id")) for genre in ballroom.getroot() for song in genre]


def extended_ballroom_copy(root: Path, missing_every: int = 0) -> Path:
    """The real XML and an empty file per song, named as the download scripts and users do:
    mostly `<Genre>/<id>.mp3`, every 7th `<Genre>/<Genre>.<id>.mp3`, every 11th `<id>.wav`;
    with `missing_every` = n, every n-th song has no audio."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(
        DATA / "extended_ballroom" / "extendedballroom_v1.1.xml",
        root / "extendedballroom_v1.1.xml",
    )
    for position, (genre, song_id) in enumerate(extended_ballroom_songs(), 1):
        if missing_every and position % missing_every == 0:
            continue
        if position % 11 == 0:
            name = f"{song_id}.wav"
        elif position % 7 == 0:
            name = f"{genre}.{song_id}.mp3"
        else:
            name = f"{song_id}.mp3"
        _touch(root / genre / name)
    return root


def write_tone(path: Path, seconds: float, rate: int = 22050, channels: int = 1, **kwargs) -> Path:
    """A noisy harmonic tone (music-like spectrum, never silent) as any soundfile format."""
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    t = np.arange(int(round(seconds * rate))) / rate
    pitch = rng.uniform(110, 440)
    mono = sum(np.sin(2 * np.pi * pitch * h * t) / h for h in range(1, 4))
    mono = 0.3 * mono / np.max(np.abs(mono)) + 0.02 * rng.standard_normal(t.size)
    samples = np.stack([mono * (1 - 0.2 * c) for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples.astype(np.float32), rate, **kwargs)
    return path
