"""Entropy, p(gold), Brier, ECE and convergence on hand-computed distributions."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from selfcorrect.metrics.uncertainty import (
    convergence,
    semantic_uncertainty,
    uncertainty,
    uncertainty_tables,
)


def answers(dists, gold=0, rounds=None, uids=None):
    rows = []
    for k, p in enumerate(dists):
        rows.append({"model": "m", "condition": "c", "readout": "logprob",
                     "round": 0 if rounds is None else rounds[k],
                     "uid": f"Age:{k}" if uids is None else uids[k], "category": "Age",
                     "question_index": str(k), "gold": gold, "probs": json.dumps(p),
                     "pred": int(np.argmax(p))})  # fmt: skip
    df = pd.DataFrame(rows)
    df["pred"] = df["pred"].astype("Int64")
    return df


def test_entropy_p_gold_brier_and_ece_hand_computed():
    d = [[0.5, 0.25, 0.25], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1]]
    u = uncertainty(answers(d), n_boot=50).iloc[0]
    ent = [-sum(x * math.log(x) for x in p) for p in d]
    assert u.entropy == pytest.approx(np.mean(ent))
    assert u.p_gold == pytest.approx((0.5 + 0.9 + 0.2) / 3)
    brier = [(0.5 - 1) ** 2 + 2 * 0.25**2, (0.9 - 1) ** 2 + 2 * 0.05**2,
             (0.2 - 1) ** 2 + 0.7**2 + 0.1**2]  # fmt: skip
    assert u.brier == pytest.approx(np.mean(brier))
    # bins of the top probability: 0.5 (bin 5, correct), 0.9 (bin 9, correct), 0.7 (bin 7,
    # wrong): ECE = (|1 - 0.5| + |1 - 0.9| + |0 - 0.7|) / 3
    assert u.ece == pytest.approx((0.5 + 0.1 + 0.7) / 3)
    assert u.entropy_lo <= u.entropy <= u.entropy_hi


def test_convergence_on_constructed_sequences():
    # item 0: a, b, b, b (converges at 1); item 1: a, b, a, b (wavers, converges at 3);
    # item 2: never changes (0)
    seqs = {0: [0, 1, 1, 1], 1: [0, 1, 0, 1], 2: [2, 2, 2, 2]}
    dists, rounds, uids = [], [], []
    for k, seq in seqs.items():
        for r, a in enumerate(seq):
            dists.append([0.8 if j == a else 0.1 for j in range(3)])
            rounds.append(r)
            uids.append(f"Age:{k}")
    df = answers(dists, rounds=rounds, uids=uids)
    df["question_index"] = [u.split(":")[1] for u in df["uid"]]
    runs, by_round = convergence(df)
    r = runs.iloc[0]
    assert r["items"] == 3 and r.mean_convergence_round == pytest.approx((1 + 3 + 0) / 3)
    assert r.wavering_rate == pytest.approx(1 / 3)
    assert list(by_round["converged"]) == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1.0])


def test_rounds_uncertainty_reads_round_0_on_the_rounds_items_only():
    # items 0-1 run two rounds; item 2 (a larger round-0 sample, as in the study) only round 0
    d = [[0.9, 0.05, 0.05], [0.9, 0.05, 0.05], [0.2, 0.7, 0.1],
         [0.6, 0.2, 0.2], [0.6, 0.2, 0.2]]  # fmt: skip
    df = answers(d, rounds=[0, 0, 0, 1, 1], uids=["Age:0", "Age:1", "Age:2", "Age:0", "Age:1"])
    t = uncertainty_tables(df, n_boot=0, seed=0)
    every = t["uncertainty"].set_index("round")
    assert every.loc[0, "n"] == 3 and every.loc[0, "p_gold"] == pytest.approx((0.9 + 0.9 + 0.2) / 3)
    rounds = t["rounds_uncertainty"].set_index("round")
    assert rounds.loc[0, "n"] == 2 and rounds.loc[0, "p_gold"] == pytest.approx(0.9)
    assert rounds.loc[1, "n"] == 2 and rounds.loc[1, "p_gold"] == pytest.approx(0.6)
    # no rounds run: no per-round table
    assert "rounds_uncertainty" not in uncertainty_tables(answers(d[:3]), n_boot=0, seed=0)


def test_semantic_uncertainty_over_samples():
    rows = []
    for s, ans in enumerate([0, 0, 1, 2]):  # four sampled reasonings of one item
        rows.append({"model": "m", "condition": "cot", "readout": "generate", "round": 0,
                     "uid": f"Age:1#s{s}" if s else "Age:1", "base_uid": "Age:1",
                     "order": "012", "pred": ans})  # fmt: skip
    df = pd.DataFrame(rows).astype({"pred": "Int64"})
    sem = semantic_uncertainty(df).iloc[0]
    q = np.array([0.5, 0.25, 0.25])
    assert sem.semantic_entropy == pytest.approx(-(q * np.log(q)).sum()) and sem["items"] == 1
