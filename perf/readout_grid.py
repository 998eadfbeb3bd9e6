"""How many distinct values a store's one-token law-school readout takes: per model and
condition, the answers, the distinct p(yes) (yes and Yes over all four continuations, as
metrics.law reads it), the share of answers on its 5 commonest values, and the distinct yes-no
log-probability gaps; for the scored conditions, how the students' Black and white prompts
sit on that grid (the share whose Black prompt's gap lies above, on or below the white one's)
and the parity those shares make. A bf16 head's logits lie on a grid (docs/law.md, "The
readout's resolution"), so few values mean a coarse readout.

    python perf/readout_grid.py [--store study] [--json out.json]"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from compare import connect, emit  # perf/, beside this script

from selfcorrect.metrics import law


def steps(d: pd.DataFrame) -> dict:
    """Students by where their Black prompt's yes-no gap lies against their white prompt's
    (above, on, below), each class's share and mean p(yes) difference (points), and the
    students per Black - white gap difference (nats: steps of the grid); the parity is the sum
    of share x mean over the three."""
    key = d["uid"].str.extract(r"^law:(?P<student>[^|]+)\|race=(?P<race>Black|white)$")
    w = (
        d.join(key)
        .dropna(subset=["race"])
        .pivot(index="student", columns="race", values=["gap", "p_yes"])
    )
    side = np.sign(w["gap"]["Black"] - w["gap"]["white"])
    diff = 100 * (w["p_yes"]["Black"] - w["p_yes"]["white"])
    gaps = (w["gap"]["Black"] - w["gap"]["white"]).round(4).value_counts().sort_index()
    out = {
        "students": len(w),
        "parity_x100": round(float(diff.mean()), 3),
        "students_by_gap_difference_nats": {str(k): int(v) for k, v in gaps.items()},
    }
    for name, s in (("above", 1), ("on", 0), ("below", -1)):
        out[name] = {
            "share": round(float((side == s).mean()), 3),
            "mean_diff_x100": round(float(diff[side == s].mean()), 3)
            if (side == s).any()
            else None,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=Path("study"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with connect(args.store) as c:
        df = pd.read_sql_query(
            "SELECT model, condition, uid, pred, probs, logprobs FROM answers "
            "WHERE benchmark='law' AND round=0 AND logprobs IS NOT NULL",
            c,
        )
    df = law.p_yes(df)
    df["gap"] = [round(float(x[0] - x[2]), 6) for x in map(json.loads, df["logprobs"])]
    out = {}
    for (model, condition), d in df.groupby(["model", "condition"], sort=True):
        counts = d["p_yes"].round(9).value_counts()
        out.setdefault(model, {})[condition] = {
            "answers": len(d),
            "distinct_p_yes": law.distinct(d["p_yes"]),
            "share_on_5_commonest_p_yes": round(float(counts.iloc[:5].sum() / len(d)), 3),
            "distinct_yes_no_gap": int(d["gap"].nunique()),
        }
        if "cot" not in condition:  # one answer per student and race
            out[model][condition]["race_steps"] = steps(d)
    emit({"store": str(args.store), "law": out}, args.json)


if __name__ == "__main__":
    main()
