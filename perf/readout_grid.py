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
import pandas as pd
from compare import connect, emit  # perf/, beside this script

from selfcorrect.metrics import law


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=Path("study"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    with connect(args.store) as c:
        df = pd.read_sql_query(
            "SELECT model, condition, pred, probs, logprobs FROM answers "
            "WHERE benchmark='law' AND round=0 AND logprobs IS NOT NULL",
            c,
        )
    df = law.p_yes(df)
    out = {}
    for (model, condition), d in df.groupby(["model", "condition"], sort=True):
        counts = d["p_yes"].round(9).value_counts()
        lp = np.array([json.loads(x) for x in d["logprobs"]])
        out.setdefault(model, {})[condition] = {
            "answers": len(d),
            "distinct_p_yes": law.distinct(d["p_yes"]),
            "share_on_5_commonest_p_yes": round(float(counts.iloc[:5].sum() / len(d)), 3),
            "distinct_yes_no_gap": int(len(np.unique(np.round(lp[:, 0] - lp[:, 2], 6)))),
        }
    emit({"store": str(args.store), "law": out}, args.json)


if __name__ == "__main__":
    main()
