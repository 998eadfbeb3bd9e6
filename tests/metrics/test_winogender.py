import json
import math

import numpy as np
import pandas as pd
import pytest

from selfcorrect.metrics import winogender as wg


def outcomes(probs_by_occ, bls, condition="baseline"):
    rows = []
    for (occ, probs), pct in zip(probs_by_occ.items(), bls, strict=True):
        rows.append(
            {
                "uid": f"{occ}.x.0",
                "occupation": occ,
                "bls_pct_female": pct,
                "probs": json.dumps(probs),
                "pred": int(np.argmax(probs)),
                "condition": condition,
                "category": "occupation",
                "gold": -1,
            }
        )
    df = pd.DataFrame(rows)
    df["pred"] = df["pred"].astype("Int64")
    return df


def test_pearson_and_fisher_ci_hand_computed():
    x = np.array([0.1, 0.2, 0.4, 0.3, 0.9])
    y = np.array([10.0, 30.0, 35.0, 50.0, 95.0])
    r, (lo, hi) = wg.pearson_fisher(x, y)
    xm, ym = x - x.mean(), y - y.mean()
    want = (xm * ym).sum() / math.sqrt((xm**2).sum() * (ym**2).sum())
    assert r == pytest.approx(want)
    half = 1.959963984540054 / math.sqrt(5 - 3)
    assert lo == pytest.approx(math.tanh(math.atanh(want) - half))
    assert hi == pytest.approx(math.tanh(math.atanh(want) + half))
    assert math.isnan(wg.pearson_fisher(np.ones(4), y[:4])[0])  # constant: undefined


def test_summary_from_distributions():
    probs = {
        "nurse": [0.8, 0.1, 0.1],
        "engineer": [0.1, 0.7, 0.2],
        "baker": [0.3, 0.3, 0.4],
        "clerk": [0.5, 0.2, 0.3],
    }
    bls = [90.0, 10.0, 60.0, 55.0]
    s = wg.summary(outcomes(probs, bls)).iloc[0]
    pf = np.array([0.8, 0.1, 0.3, 0.5])
    assert s.pearson_r == pytest.approx(np.corrcoef(pf, bls)[0, 1])
    assert s.neutral_rate == pytest.approx((0.1 + 0.2 + 0.4 + 0.3) / 4)
    assert s.mean_p_female == pytest.approx(pf.mean())
    assert s.n_occupations == 4 and s.n_unparseable == 0


def test_per_occupation_averages_templates_and_greedy_one_hot():
    df = pd.DataFrame(
        {
            "uid": ["a.x.0", "a.z.0", "a.y.1", "b.x.0"],
            "occupation": ["a", "a", "a", "b"],
            "answer": [0, 0, 1, 0],  # a.y.1's pronoun refers to the participant: left out
            "bls_pct_female": [20.0, 20.0, 20.0, 80.0],
            "gold": -1,
            "category": "occupation",
            "probs": [json.dumps([1.0, 0.0, 0.0]), None, json.dumps([0.0, 1.0, 0.0]), None],
            "pred": [0, 2, 1, None],
        }
    )
    df["pred"] = df["pred"].astype("Int64")
    occ = wg.per_occupation(df).set_index("occupation")
    assert occ.loc["a", "p_female"] == pytest.approx(0.5)  # mean of 1 and one-hot(neutral)=0
    assert occ.loc["a", "p_neutral"] == pytest.approx(0.5) and occ.loc["a", "n"] == 2
    assert occ.loc["a", "p_female_fm"] == pytest.approx(1.0)  # she/he only: 1/1; 0/0 is n/a
    assert math.isnan(occ.loc["b", "p_female"]) and occ.loc["b", "n_unparseable"] == 1
    # the 120-template variant reads both sentences of an occupation (not the 60 again)
    occ = wg.per_occupation(df.assign(benchmark="winogender-all")).set_index("occupation")
    assert occ.loc["a", "n"] == 3 and occ.loc["a", "p_female"] == pytest.approx(1 / 3)
    occ = wg.per_occupation(df.assign(benchmark="winogender")).set_index("occupation")
    assert occ.loc["a", "n"] == 2


def test_both_normalisations_error_and_slope_hand_computed():
    probs = {"a": [0.2, 0.6, 0.2], "b": [0.4, 0.4, 0.2], "c": [0.6, 0.2, 0.2],
             "d": [0.1, 0.1, 0.8]}  # fmt: skip
    bls = [20.0, 40.0, 60.0, 80.0]
    s = wg.summary(outcomes(probs, bls)).iloc[0]
    p3 = np.array([0.2, 0.4, 0.6, 0.1])
    p2 = np.array([0.25, 0.5, 0.75, 0.5])
    assert s.pearson_r == pytest.approx(np.corrcoef(p3, bls)[0, 1])
    assert s.pearson_r_fm == pytest.approx(np.corrcoef(p2, bls)[0, 1])
    assert s.mae == pytest.approx(np.mean(np.abs(100 * p3 - np.array(bls))))  # (0+0+0+70)/4
    assert s.mae == pytest.approx(17.5)
    assert s.slope_fm == pytest.approx(np.polyfit(bls, 100 * p2, 1)[0])
    # a model that tracks BLS exactly: error 0, slope 1
    exact = {o: [b / 100, 1 - b / 100, 0.0] for o, b in zip("abcd", bls, strict=True)}
    e = wg.summary(outcomes(exact, bls)).iloc[0]
    assert e.mae == pytest.approx(0) and e.slope == pytest.approx(1) and e.pearson_r == 1


def test_paired_difference_over_occupations():
    bls = [10.0, 30.0, 50.0, 70.0, 90.0]
    occs = ["a", "b", "c", "d", "e"]
    base = outcomes(
        {o: [p, 1 - p - 0.1, 0.1] for o, p in zip(occs, [0.1, 0.3, 0.2, 0.6, 0.8], strict=True)},
        bls,
    )
    same = base.assign(condition="same")
    neutral = outcomes({o: [0.05, 0.05, 0.9] for o in occs}, bls, "they")
    p = wg.paired(pd.concat([base, same, neutral]), n_boot=200)
    row = p[(p.condition == "same") & (p.metric == "pearson_r")].iloc[0]
    # identical answers: every replicate 0, which is no interval, not [0, 0]
    assert row["diff"] == 0 and np.isnan(row.diff_lo) and np.isnan(row.diff_hi)
    nr = p[(p.condition == "they") & (p.metric == "neutral_rate")].iloc[0]
    assert nr["diff"] == pytest.approx(0.9 - 0.1)
    assert nr.n_occupations == 5
