"""The child process of the cold-prepare benchmark: `python -m benchmarks.prepare_child ROOT CACHE`.

It prepares the `folder` dataset ROOT into the empty feature cache CACHE with one worker per core
and prints its timings as JSON. It imports only what a user's `prepare` run imports (not librosa),
so its workers, which import this module again, weigh what a user's workers weigh.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from musicnext_tf import datasets
from musicnext_tf.config import ExperimentConfig, resolve
from musicnext_tf.prepare import prepare
from musicnext_tf.workers import available_cores

CLIP_RULE = "paper"


def folder_config(root: Path, cache: Path, clip_rule: str = CLIP_RULE) -> ExperimentConfig:
    """A `folder` dataset over ROOT with its feature cache in CACHE."""
    overrides = {
        "data": {"data_dir": str(root), "cache_dir": str(cache)},
        "audio": {"clip_rule": clip_rule},
    }
    return resolve("folder", overrides=overrides)


def completion_rates(entries: Path, started: float, workers: int) -> dict:
    """Per folder but the warm-up (the first folder of the track id), the steady rate at which
    its entries were completed, and when the first entry of all was complete."""
    finished = {}
    for record_path in entries.glob("*.json"):
        record = json.loads(record_path.read_text(encoding="utf-8"))
        finished.setdefault(record["track_id"].split("/")[0], []).append(
            record_path.stat().st_mtime
        )
    folders = sorted(finished)  # the order prepare took them in
    rates = {}
    for previous, name in zip(folders, folders[1:]):
        span = max(finished[name]) - max(finished[previous])
        rates[name] = {"clips": len(finished[name]), "clips_per_s": len(finished[name]) / span}
    first = min(min(times) for times in finished.values())
    return {"formats": rates, "first_entry_seconds": first - started, "workers": workers}


def main(root: str, cache: str) -> None:
    """Prepares ROOT into CACHE; prints the timings."""
    config = folder_config(Path(root), Path(cache))
    index = datasets.load_index(config)
    workers = available_cores()
    started = time.time()
    prepared = prepare(index, config, progress=False, workers=workers)
    if prepared.problems:
        raise RuntimeError(f"prepare skipped clips: {prepared.problems[:3]}")
    print(json.dumps(completion_rates(prepared.cache_dir / "entries", started, workers)))


if __name__ == "__main__":
    main(*sys.argv[1:3])
