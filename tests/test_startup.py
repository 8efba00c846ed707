"""Importing the package keeps TensorFlow's known start-up chatter off stderr, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

from musicnext_tf.startup import _CHATTER

CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796018823.404059    1806 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796018823.405078    1806 cudart_stub.cc:31] Could not find cuda drivers",
    "I0000 00:00:1796018823.455149    1806 cpu_feature_guard.cc:227] This TensorFlow binary is",
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "E0000 00:00:1796018954.860698    3759 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
]
KEPT = [
    "E0000 00:00:1796018954.860698    3759 op_kernel.cc:1830] OP_REQUIRES failed",
    "W0000 00:00:1796018954.860698    3759 port.cc:153] something new",
    "Traceback (most recent call last):",
    "ImportError: libcudnn.so.9: cannot open shared object file",
]


def test_only_known_start_up_lines_are_dropped():
    assert all(_CHATTER.match(line) for line in CHATTER)
    assert not any(_CHATTER.match(line) for line in KEPT)


def test_import_leaves_stderr_clean_unless_asked():
    code = "import musicnext_tf, tensorflow as tf; tf.constant(1.0) + 1.0"
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",)}
    env.pop("MUSICNEXT_TF_STARTUP_LOGS", None)
    quiet = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert quiet.returncode == 0, quiet.stderr
    assert not [line for line in quiet.stderr.splitlines() if _CHATTER.match(line)]
    env["MUSICNEXT_TF_STARTUP_LOGS"] = "1"
    shown = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    # TensorFlow builds that print nothing at start-up make the two runs equal
    assert len(shown.stderr.splitlines()) >= len(quiet.stderr.splitlines())
