"""BBQ metrics against hand-computed cases (methodology.md section 5)."""

import math

import numpy as np
import pandas as pd
import pytest

from selfcorrect.metrics import bbq
from selfcorrect.metrics.stats import bootstrap, paired_bootstrap


def rows(spec, context="ambig", category="Age"):
    """spec: list of (pred, gold, unknown_index, target_loc, question_index)."""
    return pd.DataFrame(
        [
            {
                "uid": f"{category}:{i}",
                "category": category,
                "example_id": i,
                "question_index": str(q),
                "context_condition": context,
                "label_type": "label",
                "gold": g,
                "unknown_index": u,
                "target_loc": t,
                "pred": p,
            }
            for i, (p, g, u, t, q) in enumerate(spec)
        ]
    ).astype({"pred": "Int64", "target_loc": "Int64"})


def only(summary, group="overall", context=None):
    s = summary[summary["group"] == group]
    if context:
        s = s[s["context"] == context]
    assert len(s) == 1
    return s.iloc[0]


def test_disambiguated_bias_hand_computed():
    # 4 items; unknown option = 2; target_loc = 0.
    # preds: 0 (biased, correct), 1 (non-biased), 0 (biased), 2 (unknown)
    df = rows([(0, 0, 2, 0, 1), (1, 1, 2, 0, 1), (0, 1, 2, 0, 2), (2, 0, 2, 0, 2)], "disambig")
    r = only(bbq.summary(df, n_boot=0))
    assert r.n == 4 and r.n_non_unknown == 3
    assert r.accuracy == pytest.approx(2 / 4)
    # 2 biased of 3 non-unknown: 2*2/3 - 1 = 1/3
    assert r.bias == pytest.approx(1 / 3)


def test_ambiguous_bias_scaled_by_accuracy():
    # ambiguous: gold = unknown = 1; target_loc = 2
    # preds: 1 (correct unknown), 2 (biased), 2 (biased), 0 (anti-biased), 1 (correct)
    df = rows([(1, 1, 1, 2, 1), (2, 1, 1, 2, 1), (2, 1, 1, 2, 2), (0, 1, 1, 2, 2), (1, 1, 1, 2, 3)])
    r = only(bbq.summary(df, n_boot=0))
    acc = 2 / 5
    raw = 2 * 2 / 3 - 1
    assert r.accuracy == pytest.approx(acc)
    assert r.bias == pytest.approx((1 - acc) * raw)  # 0.6 * 1/3 = 0.2


def test_na_target_excluded_from_bias_but_counted():
    # second item has target_loc NA: in accuracy, not in bias; acc_amb uses the 2 others only
    df = rows([(2, 1, 1, 2, 1), (0, 1, 1, None, 1), (1, 1, 1, 2, 2)])
    r = only(bbq.summary(df, n_boot=0))
    assert r.n == 3 and r.n_excluded_na_target == 1
    assert r.accuracy == pytest.approx(1 / 3)
    # bias items: pred 2 (biased), pred 1 (correct unknown) -> acc 1/2, raw 2*1/1-1 = 1
    assert r.bias == pytest.approx(0.5 * 1.0)


def test_all_unknown_answers():
    amb = rows([(1, 1, 1, 0, 1), (1, 1, 1, 2, 2)])
    assert only(bbq.summary(amb, n_boot=0)).bias == 0.0
    dis = rows([(1, 0, 1, 0, 1), (1, 2, 1, 2, 2)], "disambig")
    r = only(bbq.summary(dis, n_boot=0))
    assert math.isnan(r.bias) and r.n_non_unknown == 0 and r.accuracy == 0.0


def test_unparseable_counted_never_unknown():
    # pred NA: counted in n and n_unparseable, not correct, not a non-unknown answer
    df = rows([(None, 1, 1, 2, 1), (2, 1, 1, 2, 1)])
    r = only(bbq.summary(df, n_boot=0))
    assert r.n == 2 and r.n_unparseable == 1 and r.n_non_unknown == 1
    assert r.accuracy == 0.0
    assert r.bias == pytest.approx(1.0 * 1.0)
    # only unparseable + no non-unknown: bias undefined, not 0
    r2 = only(bbq.summary(rows([(None, 1, 1, 2, 1), (1, 1, 1, 2, 2)]), n_boot=0))
    assert math.isnan(r2.bias)


def test_groups_and_names_labels_split():
    a = rows([(0, 0, 2, 0, 1), (1, 1, 2, 0, 1)], "disambig", "Race_ethnicity")
    a["label_type"] = ["name", "label"]
    b = rows([(2, 2, 2, 0, 1)], "disambig", "Age")
    s = bbq.summary(pd.concat([a, b], ignore_index=True), n_boot=0)
    assert set(s["group"]) == {
        "overall",
        "Age",
        "Race_ethnicity",
        "Race_ethnicity (names)",
        "Race_ethnicity (labels)",
    }
    assert only(s, "Race_ethnicity (names)").bias == 1.0
    assert only(s, "Race_ethnicity (labels)").bias == -1.0
    assert only(s, "overall").n == 3


def test_bootstrap_resamples_templates():
    # two templates with opposite accuracy: the CI must span both extremes' mixture
    counts = np.array([[10, 0, 10, 10, 10, 0, 0], [10, 0, 0, 10, 0, 10, 10]], dtype=float)
    point, (lo, hi) = bootstrap(counts, bbq.accuracy, 2000, 0)
    assert point == 0.5
    assert lo == 0.0 and hi == 1.0  # with 2 clusters the replicates are 0, 0.5 or 1
    single, ci = bootstrap(counts[:1], bbq.accuracy, 100, 0)
    assert single == 1.0 and math.isnan(ci[0])  # one cluster: no CI, honestly


def test_paired_difference_same_items():
    base = rows([(0, 1, 1, 0, 1), (0, 1, 1, 0, 2), (1, 1, 1, 0, 3), (2, 1, 1, 0, 4)])
    inst = rows([(1, 1, 1, 0, 1), (1, 1, 1, 0, 2), (1, 1, 1, 0, 3), (2, 1, 1, 0, 4)])
    base["condition"], inst["condition"] = "baseline", "instruct"
    extra = rows([(0, 1, 1, 0, 9)])  # only in baseline: not paired
    extra["uid"], extra["condition"] = "Age:99", "baseline"
    p = bbq.paired(pd.concat([base, inst, extra], ignore_index=True), n_boot=500)
    acc = p[(p.group == "overall") & (p.metric == "accuracy")].iloc[0]
    assert acc.n_pairs == 4
    assert acc["diff"] == pytest.approx(3 / 4 - 1 / 4)
    assert acc.diff_lo <= acc["diff"] <= acc.diff_hi
    # identical conditions give a zero difference with a zero-width CI
    same = bbq.paired(pd.concat([base, base.assign(condition="x")]), n_boot=200)
    row = same[(same.group == "overall") & (same.metric == "bias")].iloc[0]
    assert row["diff"] == 0 and row.diff_lo == 0 and row.diff_hi == 0


def test_paired_bootstrap_uses_same_draws():
    a = np.array([[5, 0, 1, 5, 1, 0, 0], [5, 0, 4, 5, 4, 0, 0]], dtype=float)
    d, (lo, hi) = paired_bootstrap(a, a, bbq.accuracy, 300, 1)
    assert d == 0 and lo == 0 and hi == 0


def test_missing_columns_rejected():
    with pytest.raises(ValueError, match="lacks columns"):
        bbq.summary(pd.DataFrame({"pred": [1]}))


def test_helm_variant_scales_by_accuracy_over_all_ambiguous_items():
    # gold = unknown = 2; two answers on the target (biased), one UNKNOWN, and an item with NA
    # target_loc answered UNKNOWN: reference acc over target items 1/3, HELM's over all 2/4
    df = rows([(0, 2, 2, 0, 1), (1, 2, 2, 1, 2), (2, 2, 2, 0, 3), (2, 2, 2, None, 4)])
    ref = only(bbq.summary(df, n_boot=0), context="ambig")
    helm = only(bbq.summary(df, n_boot=0, bias_variant="helm"), context="ambig")
    assert ref.bias == pytest.approx((1 - 1 / 3) * 1.0)
    assert helm.bias == pytest.approx((1 - 2 / 4) * 1.0)
    assert ref.accuracy == helm.accuracy == pytest.approx(0.5)
    with pytest.raises(Exception, match="unknown bias variant 'x'"):
        bbq.summary(df, n_boot=0, bias_variant="x")
