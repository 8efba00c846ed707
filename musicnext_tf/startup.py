"""Importing TensorFlow without its start-up chatter on the terminal.

TensorFlow >= 2.20 writes lines such as "oneDNN custom operations are on" and "Could not find cuda
drivers" from C++ before its logging can be configured, so `TF_CPP_MIN_LOG_LEVEL` does not silence
them. The package imports TensorFlow through `import_tensorflow`, which holds back exactly those
known lines and passes every other line on; `MUSICNEXT_TF_STARTUP_LOGS=1` shows them all. Nothing
else is changed (no environment variable, no logging setting).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

_CHATTER = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|I\d{4} [\d:. ]+\d+ (port|cudart_stub|cpu_feature_guard)\.cc:\d+\]"
    r"|To enable the following instructions:.*rebuild TensorFlow"
    r"|E\d{4} [\d:. ]+\d+ cuda_platform\.cc:\d+\] failed call to cuInit"
)


def import_tensorflow():
    """Imports and returns `tensorflow`, dropping its known start-up lines from stderr."""
    saved = _stderr_to_restore()
    if saved is None:
        import tensorflow

        return tensorflow
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401  (keras loads TensorFlow's second shared library)
            import tensorflow

            tensorflow.config.list_physical_devices()  # looks for GPUs now: "failed call to cuInit"
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode("utf-8", errors="replace")
            kept = [line for line in text.splitlines() if line and not _CHATTER.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr, flush=True)
    return tensorflow


def _stderr_to_restore() -> int | None:
    """A copy of file descriptor 2, to put back after the filtered import; None when there is
    nothing to filter: TensorFlow is already imported, MUSICNEXT_TF_STARTUP_LOGS=1 asks for every
    line, or there is no usable stderr."""
    if "tensorflow" in sys.modules or os.environ.get("MUSICNEXT_TF_STARTUP_LOGS") == "1":
        return None
    try:
        sys.stderr.flush()
        return os.dup(2)
    except (OSError, ValueError, AttributeError):
        return None
