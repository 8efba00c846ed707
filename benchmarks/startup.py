"""Start-up time of the command line: `musicnext-tf --help` and `--version` over `python -c pass`.

Each command runs as a fresh process, as a user runs it: the console script installed next to
this Python (else `python -m musicnext_tf.cli`), and the same Python doing nothing as the
reference, timed alternately; a figure is the ratio of their median wall times (the median,
unlike the best of the other families: what a user waits for is a typical start).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.results import Figure
from benchmarks.timing import all_times

FAMILY = "startup"
TARGET = 3.0  # at most 3x the start of a bare Python: the command line imports no TensorFlow


def cli_command() -> list[str]:
    """How this environment runs `musicnext-tf`: its console script, else the module."""
    script = Path(sys.executable).with_name("musicnext-tf")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "musicnext_tf.cli"]


def _process(command: list[str]):
    """A function that runs COMMAND to completion, its output discarded; a failure raises."""
    return lambda: subprocess.run(command, stdout=subprocess.DEVNULL, check=True)


def run(runs: int) -> list[Figure]:
    """Median wall time of `runs` starts of each command, after one untimed start of each."""
    cli = cli_command()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "--help": [*cli, "--help"],
        "--version": [*cli, "--version"],
    }
    times = all_times({name: _process(command) for name, command in commands.items()}, runs)
    median = {name: statistics.median(seconds) for name, seconds in times.items()}
    details = {
        "runs": runs,
        "commands": {name: " ".join(command) for name, command in commands.items()},
        "median_seconds": median,
        "seconds": times,
    }
    figures = [
        Figure(
            FAMILY,
            f"musicnext-tf {option} / python -c pass",
            median[option] / median["python -c pass"],
            target=TARGET,
            comparison="<=",
            details=details,
        )
        for option in ("--help", "--version")
    ]
    figures.append(
        Figure(FAMILY, "musicnext-tf --help wall time", 1000.0 * median["--help"], unit="ms")
    )
    return figures
