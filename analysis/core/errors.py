"""Expected errors and the command-line wrapper that reports them in one line.

Stages raise :class:`AnalysisError` for problems the user can fix (a missing file or branch, a bad
config value); :func:`cli_main` turns it into a single ``error: ...`` line and exit code 1, without
a traceback. Anything else is a bug and keeps its traceback. A stage stopped with SIGTERM (Slurm's
scancel or time limit, Ctrl-C of a cluster run) exits through its cleanup code, so that it leaves
no scratch or temporary files behind.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys
from collections.abc import Callable, Sequence


class AnalysisError(Exception):
    """A problem with the user's input: the message says what is wrong and what to do."""


#: Format of every stage's log lines.
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"

#: Libraries whose INFO lines are chatter, logged from warnings up: pyhf (a line per modifier when
#: a model is built), fontTools (dozens of lines per font that a PDF figure embeds).
QUIET_LOGGERS = ("pyhf", "fontTools")


def cli_main(func: Callable[[Sequence[str] | None], None]) -> Callable[[Sequence[str] | None], int]:
    """Wrap a stage's ``main(argv)`` so that :class:`AnalysisError` becomes one clear line.

    Args:
        func: the stage entry point, taking the argument list.

    Returns:
        A function returning the process exit code (0 on success, 1 on an expected error).
    """

    @functools.wraps(func)
    def wrapper(argv: Sequence[str] | None = None) -> int:
        # a stage's stderr is its log file: lines with time stamps, progress (INFO) included
        logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        # SIGTERM would end the process without running `finally` blocks and context exits
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            func(argv)
        except AnalysisError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0

    return wrapper


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """Leave through the normal exit path (cleanup runs), with the shell's code for SIGTERM."""
    print("error: stopped by SIGTERM (job cancelled or out of time)", file=sys.stderr)
    raise SystemExit(128 + signum)
