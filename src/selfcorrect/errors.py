"""One exception type for every user-facing problem, and how any failure becomes one line: the
CLI prints it and exits 2 (`--debug` or SELFCORRECT_DEBUG=1 shows the traceback instead)."""

from __future__ import annotations

import errno
import sqlite3

KEPT = "stored answers are kept"


class SelfCorrectError(Exception):
    """A problem with the user's input or environment (not a bug): shown as a one-line error."""


def unknown_choice(kind: str, value: str, choices) -> SelfCorrectError:
    valid = ", ".join(sorted(choices))
    return SelfCorrectError(f"unknown {kind} '{value}' (valid: {valid})")


def one_line(exc: BaseException) -> str:
    """Any failure as one line that says what happened and whether stored answers are kept."""
    if isinstance(exc, SelfCorrectError):
        text = str(exc)
    elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        text = f"disk full: the batch in flight was not stored, {KEPT}; free space and rerun"
    elif isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        text = f"{exc.strerror or exc}{where}; {KEPT}"
    elif isinstance(exc, sqlite3.Error):
        text = f"results store error: {exc}; {KEPT}"
    elif isinstance(exc, MemoryError):
        text = f"out of memory: lower --batch-size or use a smaller model; {KEPT}"
    else:
        what = str(exc).splitlines()[0] if str(exc) else ""
        text = (f"internal error ({type(exc).__name__}: {what}); {KEPT}; rerun with --debug "
                "for the traceback and report it")  # fmt: skip
    return " ".join(text.split())
