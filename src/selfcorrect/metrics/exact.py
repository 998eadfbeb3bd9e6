"""Exact transitions between round 0 and round 1 (arXiv 2412.19513, "Confidence vs Critique"),
from the log-probability readout: round 1 is scored after every possible round-0 answer j
(forced), giving q_j, the round-1 distribution given j; with p0 the round-0 distribution:

- P(j -> k) = p0[j] q_j[k], the exact transition probabilities;
- confidence CL = sum over items of p0[g] q_g[g] / sum of p0[g]: of the probability mass that
  was right at round 0, the share kept right (pooled over items, as the paper defines it);
- critique CS = sum over items and j != g of p0[j] q_j[g] / sum of (1 - p0[g]): of the mass
  that was wrong, the share moved to the gold answer;
- p(change) = sum over j of p0[j] (1 - q_j[j]); accuracy before = p0[g], after = sum p0[j] q_j[g],
  so that accuracy after = accuracy before x CL + (1 - accuracy before) x CS exactly;
- accuracy_change = accuracy after - before per item (a paired CI);
- keep_gold = q_g[g] averaged over items, unweighted: how often a model told the gold answer
  keeps it, whatever it would have said itself (an extra, not the paper's CL).

Per item the numerators and denominators are averaged over its option orders; the pooled ratios
and means get a cluster bootstrap over templates (ratios of cluster sums). Benchmarks without a
gold answer get p(change) only."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from selfcorrect.engine import BRANCH
from selfcorrect.metrics.stats import bootstrap, cluster_sum, clusters_of, ratio

MEANS = ("p_change", "keep_gold", "accuracy_before", "accuracy_after", "accuracy_change",
         "p_correct_to_wrong", "p_wrong_to_correct")  # fmt: skip
# pooled ratios: name -> (numerator, denominator), both per-item means
POOLED = {"confidence": ("p_correct_to_correct", "accuracy_before"),
          "critique": ("p_wrong_to_correct", "p_wrong_before")}  # fmt: skip
PARTS = (*MEANS, "p_correct_to_correct", "p_wrong_before")


def split_branches(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    if "readout" not in df or not (df["readout"] == BRANCH).any():
        return df, df.iloc[0:0]
    is_branch = df["readout"] == BRANCH
    return df[~is_branch], df[is_branch]


def _per_variant(p0: np.ndarray, q: np.ndarray, gold: int) -> dict:
    k = len(p0)
    out = {"p_change": float(sum(p0[j] * (1 - q[j, j]) for j in range(k)))}
    if 0 <= gold < k:
        wrong = [j for j in range(k) if j != gold]
        out |= {
            "keep_gold": float(q[gold, gold]),
            "accuracy_before": float(p0[gold]),
            "accuracy_after": float((p0 * q[:, gold]).sum()),
            # after - before per item, so its CI is paired (added after the study's first
            # data: preregistration.md, "After the data")
            "accuracy_change": float((p0 * q[:, gold]).sum() - p0[gold]),
            "p_correct_to_correct": float(p0[gold] * q[gold, gold]),
            "p_correct_to_wrong": float(p0[gold] * (1 - q[gold, gold])),
            "p_wrong_before": float(p0[wrong].sum()),
            "p_wrong_to_correct": float((p0[wrong] * q[wrong, gold]).sum()),
        }  # fmt: skip
    return out


def exact_transitions(variants: pd.DataFrame, branches: pd.DataFrame, n_boot: int = 1000,
                      seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Per model x condition: the exact values above with 95% CIs."""
    if branches.empty:
        return pd.DataFrame()
    base = variants[(variants["readout"] == "logprob") & (variants["round"] == 0)]
    base = base.set_index(["model", "condition", "uid"])
    rows = []
    for (model, cond, of), g in branches.groupby(["model", "condition", "branch_of"]):
        if (model, cond, of) not in base.index or g["branch"].nunique() != len(g):
            continue
        b0 = base.loc[(model, cond, of)]
        p0 = np.array(json.loads(b0["probs"]), dtype=float)
        if len(g) != len(p0):
            continue  # not every branch stored yet
        q = np.zeros((len(p0), len(p0)))
        for br, probs in zip(g["branch"].astype(int), g["probs"], strict=True):
            q[br] = json.loads(probs)
        gold = int(b0["gold"]) if "gold" in b0 and b0["gold"] == b0["gold"] else -1
        first = g.iloc[0]
        rows.append({"model": model, "condition": cond,
                     "item": first.get("base_uid", of) or of,
                     **{c: first[c] for c in ("category", "question_index", "student",
                                              "occupation") if c in first},
                     **_per_variant(p0, q, gold)})  # fmt: skip
    if not rows:
        return pd.DataFrame()
    per_variant = pd.DataFrame(rows)
    return _aggregate(per_variant, n_boot, seed)


def _aggregate(pv: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    out = []
    for (model, cond), part in pv.groupby(["model", "condition"], sort=True):
        keep = [c for c in part.columns if c not in PARTS]
        items = part.groupby("item", sort=False).agg(
            {**{c: "first" for c in keep if c not in ("item",)},
             **{v: "mean" for v in PARTS if v in part}}).reset_index()  # fmt: skip
        codes = clusters_of(items)
        row = {"model": model, "condition": cond, "items": len(items)}
        pairs = {v: (v, None) for v in MEANS} | POOLED  # a mean: a ratio over a count of 1s
        for name, (num, den) in pairs.items():
            if any(c not in items for c in (num, den or num)) or items[num].isna().all():
                continue
            ok = items[num].notna().to_numpy()
            above = items[num].to_numpy(float)[ok]
            below = np.ones(ok.sum()) if den is None else items[den].to_numpy(float)[ok]
            sums = cluster_sum(codes[ok], np.column_stack([below, above]))
            val, (lo, hi), _ = bootstrap(sums, ratio, n_boot, seed)
            row |= {name: val, f"{name}_lo": lo, f"{name}_hi": hi}
        out.append(row)
    return pd.DataFrame(out)
