"""The errors whose message tells the user what went wrong and what to do.

They live in this light module (no TensorFlow) so that the command line can catch them without
importing the modules that raise them; those modules re-export them.
"""


class RunError(RuntimeError):
    """A run folder cannot be used as asked; the message says why and what to do."""


class ExportError(RuntimeError):
    """An export cannot be written as asked; the message says why and what to do."""


class PrepareError(RuntimeError):
    """Preparation failed: in strict mode, a recording had to be skipped; or a worker failed."""
