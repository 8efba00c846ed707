"""Importing the package keeps TensorFlow's known start-up chatter off stderr, and nothing else."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

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
    code = (  # the package imports TensorFlow when a public name is first used
        "import musicnext_tf; musicnext_tf.MusicNeXt; import tensorflow as tf; "
        "tf.constant(1.0) + 1.0"
    )
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


@pytest.mark.parametrize(
    "arguments, status",
    [
        (["--help"], 0),
        (["--version"], 0),
        (["fit", "--help"], 0),
        (["predict", "--help"], 0),
        (["fit", "--data", "nosuch"], 2),  # a dataset-name error
        (["fit", "--epocs", "3"], 2),  # a typo'd option
        (["presets"], 0),
    ],
)
def test_the_command_line_answers_without_tensorflow(arguments, status):
    code = (
        "import sys\n"
        "from musicnext_tf import cli\n"
        "try:\n"
        f"    code = cli.main({arguments!r})\n"
        "except SystemExit as exit:\n"
        "    code = exit.code or 0\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules, code)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == f"False False {status}", result.stderr


def test_public_names_load_lazily_and_register_the_keras_classes():
    code = (
        "import sys, musicnext_tf\n"
        "assert 'tensorflow' not in sys.modules\n"
        "import keras\n"
        "layer = musicnext_tf.LSoftmax(3)\n"
        "assert keras.saving.get_registered_object('musicnext_tf>LSoftmax') is type(layer)\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == "ok"


@pytest.mark.parametrize(
    "arguments, builds_sweep",
    [
        (["--help"], False),
        (["--version"], False),
        (["fit", "--help"], False),
        (["sweep", "--help"], True),
    ],
)
def test_only_the_chosen_commands_arguments_are_built(arguments, builds_sweep):
    # the sweep's arguments need its experiment table: a measure of what is built
    code = (
        "import sys\n"
        "from musicnext_tf import cli\n"
        "try:\n"
        f"    cli.main({arguments!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('musicnext_tf.sweep_plan' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip().splitlines()[-1] == str(builds_sweep), result.stderr
    if arguments == ["--help"]:  # every command is still listed, with its summary
        for line in ("fit       train and evaluate", "sweep     reproduce one", "presets   list"):
            assert line in result.stdout
