"""How many distinct values a store's one-token law-school readout takes: per model and
condition, the answers, the distinct p(yes) (yes and Yes over all four continuations, as
metrics.law reads it), the share of answers on its 5 commonest values, and the distinct yes-no
log-probability gaps. A bf16 head's logits lie on
a grid (docs/law.md, "The readout's resolution"), so few values mean a coarse readout.

    python perf/readout_grid.py [--store study] [--json out.json]"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from compare import connect, emit  # perf/, beside this script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=Path("study"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with connect(args.store) as c:
        rows = c.execute(
            "SELECT model, condition, probs, logprobs FROM answers "
            "WHERE benchmark='law' AND round=0 AND logprobs IS NOT NULL"
        ).fetchall()
    groups: dict[tuple, list] = {}
    for model, condition, probs, lps in rows:
        groups.setdefault((model, condition), []).append((json.loads(probs), json.loads(lps)))
    out = {}
    for (model, condition), answers in sorted(groups.items()):
        p = np.array([a[0] for a in answers])
        lp = np.array([a[1] for a in answers])
        p_yes = (p[:, 0] + p[:, 1]) / p.sum(1)
        _, counts = np.unique(np.round(p_yes, 9), return_counts=True)
        out.setdefault(model, {})[condition] = {
            "answers": len(answers),
            "distinct_p_yes": len(counts),
            "share_on_5_commonest_p_yes": round(float(np.sort(counts)[-5:].sum() / len(p_yes)), 3),
            "distinct_yes_no_gap": int(len(np.unique(np.round(lp[:, 0] - lp[:, 2], 6)))),
        }
    emit({"store": str(args.store), "law": out}, args.json)


if __name__ == "__main__":
    main()
