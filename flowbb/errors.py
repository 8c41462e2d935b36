"""Errors a user causes and can fix, and how the command-line tools report them.

One concept, one home: every error that comes from the user's input (a config key or value, a path, the data, the
environment, a checkpoint that does not fit) is a :class:`UserError`, whose message names the cause and the fix on one
line. The CLIs (``train.py``, ``scripts/preprocess.py``, ``scripts/sample.py``, ``scripts/evaluate.py``) print it as
``error: <message>`` on stderr and exit with :data:`EXIT_USER_ERROR` (2), without a traceback. Any other exception is
a bug and keeps its traceback. The errors of the packages (``PreprocessError``, ``FlowbbCheckpointError``,
``EvaluationError``, ...) derive from it, so one ``except UserError`` covers them all.
"""

from __future__ import annotations

import sys
from typing import TextIO

EXIT_USER_ERROR = 2
"""Exit code of a CLI stopped by a :class:`UserError`."""

EXIT_INTERRUPTED = 130
"""Exit code of a CLI stopped by Ctrl-C (128 + SIGINT, the shell's convention)."""


class UserError(Exception):
    """An error in what the user asked for (config, data, paths, environment, checkpoint); the message says what is
    wrong and how to fix it, on one line."""


def one_line(message: object, limit: int = 600) -> str:
    """``message`` as one line (newlines and runs of whitespace collapsed), cut to ``limit`` characters."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def report_user_error(exc: BaseException, stream: TextIO | None = None) -> int:
    """Print ``error: <one-line message>`` to ``stream`` (stderr) and return :data:`EXIT_USER_ERROR`."""
    print(f"error: {one_line(exc)}", file=stream or sys.stderr, flush=True)
    return EXIT_USER_ERROR
