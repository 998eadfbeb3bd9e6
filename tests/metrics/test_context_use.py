"""The post-data BBQ checks (metrics/context_use.py) on hand-computed cases."""

import json

import pandas as pd
import pytest

from selfcorrect.metrics.context_use import context_use, unknown_by_wording


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
