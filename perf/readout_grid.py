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

import pandas as pd
from compare import emit  # perf/, beside this script

from selfcorrect.metrics import law
from selfcorrect.store import Store


def steps(d: pd.DataFrame) -> dict:
    """Students by where their Black prompt's yes-no gap lies against their white prompt's
    (above, on, below), each class's share and mean p(yes) difference (points), and the
    students per Black - white gap difference (nats: steps of the grid); the parity is the sum
    of share x mean over the three."""
    w = d[d["attribute"] == "race"].pivot(index="student", columns="group",
                                          values=["gap", "p_yes"])  # fmt: skip
    delta = (w["gap"]["Black"] - w["gap"]["white"]).round(4)
    diff = 100 * (w["p_yes"]["Black"] - w["p_yes"]["white"])
    out = {
        "students": len(w),
        "parity_x100": round(float(diff.mean()), 3),
        "students_by_gap_difference_nats": {
            str(k): int(v) for k, v in delta.value_counts().sort_index().items()
        },
    }
    for name, in_class in (("above", delta > 0), ("on", delta == 0), ("below", delta < 0)):
        mean = diff[in_class].mean() if in_class.any() else None
        out[name] = {
            "share": round(float(in_class.mean()), 3),
            "mean_diff_x100": None if mean is None else round(float(mean), 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=Path("study"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    st = Store(args.store, create=False, read_only=True)
    try:
        df = st.outcomes("law")  # answers joined with each item's student, group, attribute
    finally:
        st.close()
    df = law.p_yes(df[(df["round"] == 0) & df["logprobs"].notna()])
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
