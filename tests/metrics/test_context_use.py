"""The post-data BBQ checks (metrics/context_use.py) on hand-computed cases."""

import json

import numpy as np
import pandas as pd
import pytest

from selfcorrect.metrics.context_use import context_use, named_switch, unknown_by_wording


def row(pred, *, gold=0, unknown=1, context="disambig", readout="cloze", q="1", tied=None,
        words=("The man", "Unknown", "The woman"), condition="baseline"):  # fmt: skip
    return {"model": "m", "readout": readout, "condition": condition, "round": 0,
            "context_condition": context, "gold": gold, "unknown_index": unknown,
            "category": "Age", "question_index": q, "pred": pred,
            "tied": None if tied is None else json.dumps(tied),
            "candidates": json.dumps([f" {w}" for w in words])}  # fmt: skip


def test_context_use_counts_the_right_person_among_named_answers_with_ties_shared():
    items = pd.DataFrame([
        row(0),  # right person
        row(2, q="2"),  # the other person
        row(1),  # unknown: names nobody
        row(None, tied=[0, 1], q="2"),  # tie right/unknown: half an answer, half right
        row(2, context="ambig"),  # ambiguous items are not read
    ]).astype({"pred": "Int64"})  # fmt: skip
    out = context_use(items, n_boot=200, seed=0).iloc[0]
    assert out["n_items"] == 4 and out["named"] == pytest.approx(2.5)
    assert out["right_share"] == pytest.approx(1.5 / 2.5)
    assert out["right_lo"] <= out["right_share"] <= out["right_hi"] and out["at_chance"]


def test_unknown_by_wording_reads_each_prompts_own_unknown_option_on_content_readouts():
    other = ("The man", "Can't be determined", "The woman")
    rows = [
        row(1, context="ambig"), row(0, context="ambig", q="2"),  # "Unknown": 1 of 2
        row(2, context="ambig", unknown=2, words=("A", "B", "Cannot answer")),  # chosen
        row(0, context="ambig", words=other), row(2, context="ambig", words=other),  # 0 of 2
        row(None, context="ambig", words=other),  # unreadable: not in the denominator
        row(1, context="ambig", readout="logprob"),  # a letter readout has no wording
        row(1),  # disambiguated: not read
    ]  # fmt: skip
    out = unknown_by_wording(pd.DataFrame(rows).astype({"pred": "Int64"}))
    got = out.set_index("wording")[["n", "unknown_rate"]].to_dict("index")
    assert got == {"Unknown": {"n": 2, "unknown_rate": 0.5},
                   "Cannot answer": {"n": 1, "unknown_rate": 1.0},
                   "Can't be determined": {"n": 2, "unknown_rate": 0.0}}  # fmt: skip
    assert set(out["readout"]) == {"cloze"}


def test_a_model_always_right_gets_a_wilson_interval_not_a_point():
    items = pd.DataFrame([row(0, q=str(k)) for k in range(10)]).astype({"pred": "Int64"})
    out = context_use(items, n_boot=200, seed=0).iloc[0]
    assert out["right_share"] == 1.0 and 0.6 < out["right_lo"] < 0.8
    assert out["right_hi"] == pytest.approx(1.0)
    assert not out["at_chance"]


def test_named_switch_pairs_items_and_separates_which_person_from_whether():
    # ambiguous items; per item (target = stereotyped person, unknown): the other person is the
    # third option, so positions vary to catch a hard-coded one
    layout = [(0, 1), (2, 0), (1, 2), (0, 2), (2, 1), (1, 0)]  # (target_loc, unknown_index)

    def amb(pred, k, condition, tied=None, **extra):
        target, unknown = layout[k % 6]
        return row(pred, context="ambig", q=str(k), condition=condition, unknown=unknown,
                   tied=tied) | {"target_loc": target, "uid": f"Age:{k}"} | extra  # fmt: skip

    def other(k):
        target, unknown = layout[k % 6]
        return 3 - target - unknown

    def stereo(k):
        return layout[k % 6][0]

    def unknown(k):
        return layout[k % 6][1]

    # (baseline, S1) per item: 0 stereo/stereo, 1 other->stereo, 2 stereo->unknown,
    # 3 other/other, 4 unknown->stereo (not named at baseline), 5 stereo -> stereo/unknown tie
    base = [stereo(0), other(1), stereo(2), other(3), unknown(4), stereo(5)]
    s1 = [stereo(0), stereo(1), unknown(2), other(3), stereo(4), None]
    rows = [amb(p, k, "baseline") for k, p in enumerate(base)]
    rows += [amb(p, k, "instruct", tied=[stereo(5), unknown(5)] if p is None else None)
             for k, p in enumerate(s1)]  # fmt: skip
    rows += [
        amb(other(7), 7, "instruct"),  # no baseline answer: not paired
        amb(other(0), 8, "instruct", round=1),  # a later round: would switch item 8
        amb(stereo(0), 8, "baseline"),
        amb(other(0), 9, "instruct", context_condition="disambig"),  # not ambiguous
        amb(stereo(0), 9, "baseline", context_condition="disambig"),
        amb(other(0), 10, "instruct", target_loc=None),  # no target: no bias reading
        amb(stereo(0), 10, "baseline", target_loc=None),
        amb(None, 11, "instruct"),
        amb(stereo(5), 11, "baseline"),
    ]  # unreadable under S1
    out = named_switch(pd.DataFrame(rows).astype({"pred": "Int64"}), n_boot=200, seed=0)
    got = out.iloc[0]
    assert len(out) == 1 and got["condition"] == "instruct"
    # paired: items 0-5 and 11 (unreadable under S1); item 8's S1 answer is from round 1
    assert got["n_items"] == 7 and got["n_unreadable"] == 1
    # both named: items 0, 1, 3 and half of item 5 (its S1 answer is a stereo/unknown tie)
    assert got["both_named"] == pytest.approx(3.5)
    assert got["stereo_reference"] == pytest.approx(1.5 / 3.5)  # items 0 and half of 5
    assert got["stereo_condition"] == pytest.approx(2.5 / 3.5)  # items 0, 1, half of 5
    assert got["change"] == pytest.approx(1 / 3.5)
    assert got["to_other"] == 0 and got["to_stereo"] == 1  # item 1 switched to the stereotype
    assert got["to_other_if_random"] == pytest.approx(1 * 1.5 / 3.5)
    # turned unknown: item 2 and the other half of item 5, both named stereotyped at baseline
    assert got["turned_unknown"] == pytest.approx(1.5) and got["turned_stereo"] == 1.0
    assert got["turned_minus_kept"] == pytest.approx(1 - 1.5 / 3.5)
    assert got["change_lo"] <= got["change"] <= got["change_hi"]
    assert got["turned_lo"] <= got["turned_minus_kept"] <= got["turned_hi"]
    assert np.isnan(got["turned_adjusted"])  # no probabilities stored: no confidence control


def test_named_switch_confidence_control_compares_turned_and_kept_at_equal_p_unknown():
    # target (stereotyped) = option 0, unknown = 1, the other person = 2. At baseline two items
    # named stereotyped with p(unknown) 0.4 (one turns "unknown" under S1, one is kept), three
    # with 0.05 (one stereotyped, two the other person; all kept). Raw: every turned item was
    # stereotyped against 2 of 4 kept; at equal p(unknown) the turned item is no more often
    # stereotyped than the kept one.
    def amb(pred, k, condition, p_unknown):
        probs = [0.0, p_unknown, 0.0]
        probs[pred] += 1 - p_unknown
        return row(pred, context="ambig", q=str(k), condition=condition) | {
            "target_loc": 0, "uid": f"Age:{k}", "probs": json.dumps(probs)}  # fmt: skip

    base = [(0, 0.4), (0, 0.4), (0, 0.05), (2, 0.05), (2, 0.05)]
    s1 = [1, 0, 0, 2, 2]
    rows = [amb(p, k, "baseline", u) for k, (p, u) in enumerate(base)]
    rows += [amb(p, k, "instruct", 0.1) for k, p in enumerate(s1)]
    got = named_switch(pd.DataFrame(rows).astype({"pred": "Int64"}), n_boot=200, seed=0).iloc[0]
    assert got["turned_minus_kept"] == pytest.approx(1 - 2 / 4)
    assert got["ref_unknown_gap"] == pytest.approx((0.4 + 0.4 + 0.05) / 3 - 0.05)
    assert got["turned_adjusted"] == pytest.approx(0.0)
    assert got["ref_unknown_gap_lo"] <= got["ref_unknown_gap"] <= got["ref_unknown_gap_hi"]
    # the kept item at p(unknown) 0.4 named the other person: now, at equal p(unknown), the
    # turned item is stereotyped and the kept one is not
    base[1], s1[1] = (2, 0.4), 2
    rows = [amb(p, k, "baseline", u) for k, (p, u) in enumerate(base)]
    rows += [amb(p, k, "instruct", 0.1) for k, p in enumerate(s1)]
    got = named_switch(pd.DataFrame(rows).astype({"pred": "Int64"}), n_boot=0, seed=0).iloc[0]
    assert got["turned_minus_kept"] == pytest.approx(1 - 1 / 4)
    assert got["turned_adjusted"] == pytest.approx(1.0)

    # three quintile bins (p(unknown) 0.01 x 4, 0.2 x 3, 0.5 x 3); per bin (baseline answer,
    # S1 turns it "unknown"?). 0.01: stereo turned, stereo / other / other kept (expected
    # stereotyped turned 1 x 1/3); 0.2: stereo and other turned, stereo kept (expected 2 x 1);
    # 0.5: three turned, none kept (nothing to compare with: left out). Raw: 3 of 6 turned and
    # 2 of 4 kept stereotyped
    layout = [(0, 0.01, 1), (0, 0.01, 0), (2, 0.01, 0), (2, 0.01, 0), (0, 0.2, 1), (2, 0.2, 1),
              (0, 0.2, 0), (0, 0.5, 1), (2, 0.5, 1), (2, 0.5, 1)]  # fmt: skip
    rows = [amb(p, k, "baseline", u) for k, (p, u, _) in enumerate(layout)]
    rows += [amb(1 if turn else p, k, "instruct", 0.1) for k, (p, _, turn) in enumerate(layout)]
    got = named_switch(pd.DataFrame(rows).astype({"pred": "Int64"}), n_boot=0, seed=0).iloc[0]
    assert got["turned_minus_kept"] == pytest.approx(3 / 6 - 2 / 4)
    assert got["turned_adjusted"] == pytest.approx(((1 - 1 / 3) + (1 - 2)) / (1 + 2))
    assert got["turned_adjusted_used"] == 3 and got["turned_adjusted_min_kept"] == 0
    stereo_p, other_p = [0.01, 0.01, 0.2, 0.2, 0.5], [0.01, 0.01, 0.2, 0.5, 0.5]
    assert got["ref_unknown_gap"] == pytest.approx(np.mean(stereo_p) - np.mean(other_p))
    # the generation readout's option shares are votes, not probabilities: no control
    gen = pd.DataFrame(rows).assign(readout="generate").astype({"pred": "Int64"})
    assert np.isnan(named_switch(gen, n_boot=0, seed=0).iloc[0]["turned_adjusted"])


def test_named_switch_refuses_an_item_answered_twice():
    twice = [row(0, context="ambig", condition=c) | {"target_loc": 0, "uid": "Age:1"}
             for c in ("baseline", "instruct", "instruct")]  # fmt: skip
    with pytest.raises(ValueError, match="answered twice under 'instruct'"):
        named_switch(pd.DataFrame(twice).astype({"pred": "Int64"}), n_boot=0, seed=0)
