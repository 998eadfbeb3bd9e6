"""Self-correction across feedback rounds: transition matrices and flip rates between
consecutive rounds of the same item (same model, condition and readout)."""

from __future__ import annotations

import pandas as pd

KEYS = ["model", "condition", "readout"]
UNPARSEABLE = "unparseable"
UNREADABLE = (UNPARSEABLE, "tie")  # no single answer


def bbq_states(df: pd.DataFrame) -> dict[str, pd.Series]:
    """Per answer: correctness, and what kind of answer it was (biased = the target_loc
    option, counter-biased = the other group, UNKNOWN, unparseable)."""
    pred, gold = df["pred"].astype("Int64"), df["gold"]
    target, unknown = df["target_loc"].astype("Int64"), df["unknown_index"]
    parsed = pred.notna()
    # no single answer: unreadable, or (over option orders) a tie
    status = df["parse_status"] if "parse_status" in df else pd.Series("", index=df.index)
    none = pd.Series(UNPARSEABLE, index=df.index).where(status != "tie", "tie")
    correctness = pd.Series("wrong", index=df.index)
    correctness[parsed & (pred == gold).fillna(False)] = "correct"
    correctness[~parsed] = none[~parsed]
    kind = pd.Series("counter-biased", index=df.index)
    kind[target.isna()] = "answer"
    kind[(pred == target).fillna(False)] = "biased"
    kind[(pred == unknown).fillna(False)] = "UNKNOWN"
    kind[~parsed] = none[~parsed]
    return {"correctness": correctness, "answer": kind}


def pronoun_states(df: pd.DataFrame) -> dict[str, pd.Series]:
    names = {0: "female", 1: "male", 2: "neutral"}
    pred = df["pred"].astype("Int64")
    return {"pronoun": pred.map(names).astype(object).where(pred.notna(), UNPARSEABLE)}


def transitions(
    df: pd.DataFrame, states: dict[str, pd.Series]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(transition counts, flip summary) between round r-1 and r for every r present."""
    if df.empty or df["round"].max() == 0:
        return pd.DataFrame(), pd.DataFrame()
    base = df[[*KEYS, "uid", "round", "pred"]].assign(**states)
    nxt = base.assign(round=base["round"] - 1)
    pairs = base.merge(nxt, on=[*KEYS, "uid", "round"], suffixes=("_from", "_to"))
    pairs = pairs.rename(columns={"round": "from_round"}).assign(
        to_round=lambda d: d.from_round + 1
    )
    group = [*KEYS, "from_round", "to_round"]
    counts = []
    for kind in states:
        c = (
            pairs.groupby([*group, f"{kind}_from", f"{kind}_to"])
            .size()
            .reset_index(name="n")
            .rename(columns={f"{kind}_from": "from", f"{kind}_to": "to"})
        )
        counts.append(c.assign(kind=kind))
    matrix = pd.concat(counts, ignore_index=True)[[*group, "kind", "from", "to", "n"]]

    def summarise(g: pd.DataFrame) -> pd.Series:
        changed = g["pred_from"].astype("Int64").fillna(-1) != g["pred_to"].astype("Int64").fillna(
            -1
        )
        out = {"n": len(g), "flips": int(changed.sum()), "flip_rate": float(changed.mean())}
        for kind in states:
            a, b = g[f"{kind}_from"], g[f"{kind}_to"]
            # a move to or from an unreadable answer (or a tie) is counted on its own, never
            # as a correction or a new error
            ra, rb = ~a.isin(UNREADABLE), ~b.isin(UNREADABLE)
            if kind == "correctness":
                out["wrong->correct"] = int(((a == "wrong") & (b == "correct")).sum())
                out["correct->wrong"] = int(((a == "correct") & (b == "wrong")).sum())
            if kind == "answer":
                out["biased->unbiased"] = int(((a == "biased") & rb & (b != "biased")).sum())
                out["unbiased->biased"] = int((ra & (a != "biased") & (b == "biased")).sum())
                out["answer->UNKNOWN"] = int((ra & (a != "UNKNOWN") & (b == "UNKNOWN")).sum())
                out["UNKNOWN->answer"] = int(((a == "UNKNOWN") & rb & (b != "UNKNOWN")).sum())
            if kind in ("correctness", "answer"):
                out["readable->unreadable"] = int((ra & ~rb).sum())
                out["unreadable->readable"] = int((~ra & rb).sum())
        return pd.Series(out)

    flips = pairs.groupby(group).apply(summarise, include_groups=False).reset_index()
    return matrix, flips
