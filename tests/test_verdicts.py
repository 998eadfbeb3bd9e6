"""Verdicts from hand-made result tables: each rule's three outcomes."""

from __future__ import annotations

import pandas as pd

from selfcorrect.verdicts import verdicts

MODELS = {
    "small-chat": {"params": 1e8, "kind": "chat", "alignment": "SFT + DPO"},
    "base": {"params": 3e8, "kind": "base", "alignment": "none (pretrained base)"},
    "large-chat": {"params": 2e9, "kind": "chat", "alignment": "SFT + RLHF"},
}


def _paired(rows, reference="baseline"):
    """rows: (model, condition, diff, lo, hi) for ambiguous bias, overall, round 0."""
    return pd.DataFrame(
        [
            {"model": m, "readout": "logprob", "round": 0, "condition": c,
             "reference": reference, "group": "overall", "context": "ambig", "metric": "bias",
             "n_pairs": 100, "diff": d, "diff_lo": lo, "diff_hi": hi}
            for m, c, d, lo, hi in rows
        ]
    )  # fmt: skip


def _summary(oracle_acc):
    rows = []
    for m in MODELS:
        for ctx in ("ambig", "disambig"):
            for cond in ("baseline", "oracle"):
                acc, lo, hi = oracle_acc[m] if cond == "oracle" else (0.4, 0.3, 0.5)
                rows.append({"model": m, "condition": cond, "readout": "logprob", "round": 0,
                             "group": "overall", "context": ctx, "n": 100, "accuracy": acc,
                             "accuracy_lo": lo, "accuracy_hi": hi})  # fmt: skip
    return pd.DataFrame(rows)


def _verdict(tables, hid):
    v = verdicts(tables, MODELS).set_index("id")
    return v.loc[hid, "verdict"], v.loc[hid, "evidence"]


SIG_DOWN, SIG_UP = (-0.1, -0.15, -0.05), (0.1, 0.05, 0.15)
NULL, NONE = (0.0, -0.2, 0.2), (0.0, -0.03, 0.03)  # unclear; a precise null


def test_h1_h5_each_outcome():
    base = {"bbq_summary": _summary({m: (0.9, 0.85, 0.95) for m in MODELS})}
    # the >= 1B aligned model drops, the tiny and base ones do not: the claim exactly
    good = _paired([("small-chat", "instruct", *NULL), ("large-chat", "instruct", *SIG_DOWN),
                    ("base", "instruct", *NULL)])  # fmt: skip
    assert _verdict({**base, "bbq_paired": good}, "H1")[0] == "supported"
    tiny_drops = _paired([("small-chat", "instruct", *SIG_DOWN),
                          ("large-chat", "instruct", *SIG_DOWN)])  # fmt: skip
    assert _verdict({**base, "bbq_paired": tiny_drops}, "H1")[0] == "not supported"
    large_up = _paired([("large-chat", "instruct", *SIG_UP)])
    assert _verdict({**base, "bbq_paired": large_up}, "H1")[0] == "not supported"
    unclear = _paired([("small-chat", "instruct", *NULL), ("large-chat", "instruct", *NULL)])
    verdict, evidence = _verdict({**base, "bbq_paired": unclear}, "H1")
    assert verdict == "inconclusive"
    assert "large-chat: instruct - baseline = 0.0 [-20.0, 20.0]" in evidence
    both_down = tiny_drops
    neg = _paired([(m, "negation", *SIG_UP) for m in MODELS])
    assert _verdict({**base, "bbq_paired": neg}, "H5")[0] == "supported"
    neg = _paired([("small-chat", "negation", *SIG_DOWN), ("base", "negation", *SIG_UP)])
    assert _verdict({**base, "bbq_paired": neg}, "H5")[0] == "not supported"
    neg = _paired([("small-chat", "negation", *NONE), ("base", "negation", *SIG_UP)])
    assert _verdict({**base, "bbq_paired": neg}, "H5")[0] == "not supported"  # no effect
    neg = _paired([("small-chat", "negation", *NULL), ("base", "negation", *SIG_UP)])
    assert _verdict({**base, "bbq_paired": neg}, "H5")[0] == "inconclusive"
    none = _paired([("small-chat", "instruct", *NULL), ("large-chat", "instruct", *NONE)])
    assert _verdict({**base, "bbq_paired": none}, "H1")[0] == "not supported"
    assert _verdict({**base, "bbq_paired": both_down}, "H5")[0] == "not tested"


def test_h6_oracle_thresholds():
    high = {"bbq_summary": _summary({m: (0.95, 0.9, 0.99) for m in MODELS})}
    assert _verdict(high, "H6")[0] == "supported"
    low = dict(high)
    acc = {m: (0.95, 0.9, 0.99) for m in MODELS} | {"base": (0.5, 0.4, 0.6)}
    low["bbq_summary"] = _summary(acc)
    assert _verdict(low, "H6")[0] == "not supported"
    acc["base"] = (0.82, 0.7, 0.9)
    assert _verdict({"bbq_summary": _summary(acc)}, "H6")[0] == "inconclusive"


def test_h2_h3_h4_g1():
    s = {"bbq_summary": _summary({m: (0.9, 0.85, 0.95) for m in MODELS})}
    p = _paired([
        ("small-chat", "instruct", *NULL), ("small-chat", "s4", *SIG_DOWN),
        ("base", "instruct", *NULL), ("large-chat", "instruct", *SIG_DOWN),
        ("large-chat", "s4", *SIG_DOWN), ("small-chat", "cot", *NULL),
        ("large-chat", "cot", *SIG_DOWN),
    ])  # fmt: skip
    extra = _paired([("large-chat", "cot", *SIG_DOWN)], reference="instruct")
    t = {**s, "bbq_paired": p, "bbq_paired_extra": extra}
    assert _verdict(t, "H3")[0] == "supported"  # the small model needs the specific S4
    assert _verdict(t, "H4")[0] == "supported"  # only the large one gains from CoT
    assert _verdict(t, "G1")[0] == "supported"
    assert _verdict(t, "H2")[0] == "inconclusive"  # the aligned small model shows no effect
    p2 = _paired([("small-chat", "instruct", *SIG_DOWN), ("base", "instruct", *NULL)])
    assert _verdict({**s, "bbq_paired": p2}, "H2")[0] == "supported"
    assert _verdict({**s, "bbq_paired": p2}, "G1")[0] == "not tested"


def test_g3_winogender():
    w = pd.DataFrame([{"model": "large-chat", "condition": "baseline", "readout": "logprob",
                       "round": 0, "pearson_r": 0.55, "r_lo": 0.35, "r_hi": 0.7}])  # fmt: skip
    p = pd.DataFrame([
        {"model": "large-chat", "readout": "logprob", "round": 0, "condition": c,
         "reference": "baseline", "metric": "pearson_r", "diff": d, "diff_lo": lo, "diff_hi": hi}
        for c, d, lo, hi in (("cot", -0.4, -0.6, -0.2), ("match_stats", 0.3, 0.1, 0.5))
    ])  # fmt: skip
    t = {"winogender_summary": w, "winogender_paired": p}
    assert _verdict(t, "G3")[0] == "supported"
    w2 = w.assign(r_lo=-0.1, r_hi=0.2, pearson_r=0.05)
    assert _verdict({**t, "winogender_summary": w2}, "G3")[0] == "not supported"
