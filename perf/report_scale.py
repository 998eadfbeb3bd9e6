"""The cost of the report on a store the size of the pre-registered study: the study's plan
(docs/results/plan.toml) run with four fake models (tests/fakes.py: no model, answers in
microseconds) into a scratch store, then `selfcorrect report` on it with the study's rules,
timed with its peak memory. Tells before the real study ends whether its report fits the
machine (time, RSS), without computing any of the study's results.

The fakes pick an answer from each prompt's text: the given letter under oracle, else the
option whose text hashes highest (the same option under every order, so the validity gate
passes and the verdicts' tests run as they will on a passing model).

    python perf/report_scale.py [--models 4] [--json out.json] [--keep DIR]"""

from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import tempfile
import time
import tomllib
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTION = re.compile(r"\(([abc])\) ([^\n]*?)(?=\s*\([abc]\) |\n|$)")
GIVEN = re.compile(r"The correct answer is \(([abc])\)")


def prefer(salt: str):
    def pick(prompt: str) -> int:
        given = GIVEN.search(prompt)
        if given:
            return "abc".index(given.group(1))
        options = OPTION.findall(prompt)
        if len(options) == 3:
            keys = [zlib.crc32((salt + text.rstrip(". ")).encode()) for _, text in options]
            return keys.index(max(keys))
        return zlib.crc32((salt + prompt).encode()) % 2

    return pick


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=4)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--keep", type=Path, help="build the store here and keep it")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from selfcorrect import api, runner
    from selfcorrect.plan import load_plan
    from tests.fakes import BEHAVIOUR

    names = [f"fake:m{k}" for k in range(args.models)]
    for name in names:
        BEHAVIOUR[name] = {"prefer": prefer(name)}
    plan = tomllib.loads((ROOT / "docs/results/plan.toml").read_text())
    work = args.keep or Path(tempfile.mkdtemp(prefix="report-scale-"))
    text = (ROOT / "docs/results/plan.toml").read_text()
    text = text.replace('models = ["ladder"]', f"models = {json.dumps(names)}")
    text = text.replace('save_hidden = "14,-1"', 'save_hidden = "1,-1"')  # the fake has 3
    text = text.replace('rules = "docs/results/rules.toml"',
                        f'rules = "{ROOT / "docs/results/rules.toml"}"')  # fmt: skip
    path = work / "plan.toml"
    path.write_text(text)
    t = time.perf_counter()
    specs = load_plan(path, work / "store").specs
    runner.run_all(specs, progress=False)
    build = time.perf_counter() - t
    t = time.perf_counter()
    rep = api.report(work / "store", n_boot=plan["bootstrap"], seed=plan["seed"],
                     rules=ROOT / "docs/results/rules.toml", out=work / "report")  # fmt: skip
    seconds = time.perf_counter() - t
    tests = rep.tables["verdict_tests"]
    out = {
        "models": args.models,
        "build_store_s": round(build, 1),
        "report_s": round(seconds, 1),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "verdict_tests": int(len(tests)),
        "gate": rep.tables["bbq_gate"][["model", "readout", "system", "verdict"]].to_dict(
            "records"
        ),
        "files": len(rep.files),
        "store": str(work / "store"),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
