"""Runs every crafted input of cases.py as a new user would (a fresh `python -m selfcorrect.cli`
process each) against the selfcorrect source tree given, and counts how each ended: a one-line
error with exit 2, a traceback, or anything else. Used to compare versions:

    python -m tests.reliability.tally                      # the installed tree
    python -m tests.reliability.tally --src /tmp/old/src   # another checkout's src/
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.reliability.cases import CASES, SOURCE, STORE


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", help="a selfcorrect src/ folder to run instead of the installed one")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = args.src
    from selfcorrect import api
    from tests import fakes  # noqa: F401

    tally = {"one-line error": 0, "traceback": 0, "other": 0}
    with tempfile.TemporaryDirectory() as d:
        store = Path(d) / "store"
        api.run("fake:a", conditions="baseline", limit=8, out=store, bootstrap=0,
                progress=False, write_report=False)  # fmt: skip
        SOURCE["db"] = store / "results.sqlite"
        for k, (name, make) in enumerate(CASES):
            tmp = Path(d) / f"case{k}"
            tmp.mkdir()
            argv = [a.replace(STORE, str(store)) for a in make(tmp)]
            try:
                r = subprocess.run([sys.executable, "-m", "selfcorrect.cli", *argv], env=env,
                                   capture_output=True, text=True, timeout=90)  # fmt: skip
            except subprocess.TimeoutExpired:  # it went to work instead of refusing
                tally["other"] += 1
                print(f"{'other':15} ran over 90 s  {name}")
                continue
            err = r.stderr.strip()
            kind = ("traceback" if "Traceback" in err else "one-line error"
                    if r.returncode == 2 and len(err.splitlines()) == 1 else "other")  # fmt: skip
            tally[kind] += 1
            last = err.splitlines()[-1][:110] if err else ""
            print(f"{kind:15} exit {r.returncode:3}  {name}: {last}")
    print(f"{len(CASES)} crafted inputs: {tally}")


if __name__ == "__main__":
    main()
