"""Named points where the reliability tests make a process fail on purpose (kill -9 in the
middle of a transaction, a full disk): SELFCORRECT_FAULT=NAME[:N] acts at the N-th time (default
the first) the point is reached. Unset, a point costs one dictionary lookup."""

from __future__ import annotations

import errno
import os
import signal

_COUNTS: dict[str, int] = {}


def point(name: str) -> None:
    spec = os.environ.get("SELFCORRECT_FAULT")
    if not spec:
        return
    want, _, nth = spec.partition(":")
    kind, _, where = want.partition("@")  # kill@NAME, term@NAME or disk_full@NAME
    if where != name:
        return
    _COUNTS[name] = _COUNTS.get(name, 0) + 1
    if _COUNTS[name] != int(nth or 1):
        return
    if kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif kind == "term":  # what a job scheduler or `timeout` sends
        os.kill(os.getpid(), signal.SIGTERM)
    elif kind == "disk_full":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
