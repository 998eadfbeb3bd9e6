"""The pre-registered named contrasts: which tests, paired on which items, one Holm family, on
constructed answers with known biases."""

import pandas as pd
import pytest

from selfcorrect.contrasts import named_contrasts
from selfcorrect.metrics.inference import holm
from selfcorrect.rules_file import load_rules
from selfcorrect.verdicts import Inputs, by_protocol
from tests.test_verdicts import _items

SHARES = {"baseline": 0.6, "instruct": 0.1, "s4": 0.1, "prefer-unknown": 0.55, "negation": 0.6,
          "cot+sample:T1": 0.3}  # fmt: skip
MODELS = {
    "q-small": {"params": 5e8, "kind": "chat", "alignment": "RLHF", "family": "qwen"},
    "q-big": {"params": 1.5e9, "kind": "chat", "alignment": "RLHF", "family": "qwen"},
    "other": {"params": 1e9, "kind": "chat", "alignment": "SFT", "family": "x"},
    "broken": {"params": 2e8, "kind": "chat", "alignment": "SFT", "family": "qwen"},
}


def _store():
    frames = [_items(m, c, share, seed=k) for k, m in enumerate(("q-small", "q-big", "broken"))
              for c, share in SHARES.items()]  # fmt: skip
    frames += [_items("other", c, SHARES[c]) for c in ("baseline", "instruct")]
    # rounds on half the items: round 6 = round 0 after baseline, changed after S1
    late = _items("q-big", "baseline", 0.6, seed=1)
    frames.append(late[late.uid.isin([f"Age:{i}" for i in range(80)])].assign(round=6))
    frames.append(_items("q-big", "instruct", 0.3, n_templates=20, seed=7).assign(round=6))
    gate = pd.DataFrame([{"model": "broken", "readout": "logprob", "system": "default",
                          "verdict": "does not follow the format",
                          "reasons": "top letter share 0.95 > 0.8"}])  # fmt: skip
    return pd.concat(frames, ignore_index=True), gate


def _bias(df, model, condition, rnd=0):
    d = df[(df.model == model) & (df.condition == condition) & (df["round"] == rnd)]
    return float((d["pred"] == 0).mean())  # ambiguous bias = share picking the target here


def test_the_named_contrasts_are_one_family_on_gate_passing_models():
    items, gate = _store()
    rules, _ = load_rules()
    t = named_contrasts(by_protocol(Inputs(items, gate)), MODELS, rules)
    assert "broken" not in " ".join(t["test"])  # failed the gate: in no contrast
    big = t[t["test"].str.startswith("q-big:")].set_index("test")
    # every numbered contrast on the model that has every condition, in the registered order
    assert list(big.index) == [
        "q-big: instruct - baseline, ambig bias", "q-big: s4 - baseline, ambig bias",
        "q-big: s4 - instruct, ambig bias", "q-big: prefer-unknown - baseline, ambig bias",
        "q-big: s4 - prefer-unknown, ambig bias", "q-big: negation - baseline, ambig bias",
        "q-big: cot - instruct, ambig bias",  # the store's sampled CoT, read as the protocol
        "q-big: baseline (round 6) - baseline, ambig bias",
        "q-big: instruct (round 6) - instruct, ambig bias"]  # fmt: skip
    assert list(big["contrast"]) == ["1", "2", "2", "3", "3", "4", "5", "6", "6"]
    s1 = big.loc["q-big: instruct - baseline, ambig bias"]
    want = _bias(items, "q-big", "instruct") - _bias(items, "q-big", "baseline")
    assert s1["estimate"] == pytest.approx(want)
    rates = [1 - _bias(items, "q-big", c) for c in ("instruct", "baseline")]
    assert s1["unknown rate (condition / reference)"] == f"{rates[0]:.0%} / {rates[1]:.0%}"
    assert big.loc["q-big: baseline (round 6) - baseline, ambig bias", "estimate"] == 0
    half = items[items.uid.isin([f"Age:{i}" for i in range(80)])]
    late = _bias(half, "q-big", "instruct", 6) - _bias(half, "q-big", "instruct")
    assert big.loc["q-big: instruct (round 6) - instruct, ambig bias", "estimate"] == (
        pytest.approx(late)
    )
    # the unknown rates beside a contrast are on the test's items (round 6 ran on 80 of 160)
    first = _bias(items[items.uid.isin(set(items[items["round"] == 6].uid))], "q-big", "instruct")
    row = big.loc["q-big: instruct (round 6) - instruct, ambig bias"]
    assert row["unknown rate (condition / reference)"].endswith(f" / {1 - first:.0%}")
    assert row["n_items"] == 80
    # a model with baseline and S1 only gets contrast 1 only; no round contrasts without rounds
    assert list(t[t["test"].str.startswith("other:")]["contrast"]) == ["1"]
    assert not t["test"].str.startswith("q-small: baseline (round").any()
    # contrast 9: larger minus smaller of one family only (not across families)
    assert t[t["contrast"] == "9"]["test"].tolist() == [
        "(instruct - baseline) in q-big minus in q-small, ambig bias"
    ]
    # one Holm family over every test
    assert (t["family_size"] == len(t)).all()
    assert t["p_adj"].tolist() == pytest.approx(holm(t["p"].tolist()))


def test_the_system_prompt_comparison_pairs_each_condition_with_itself_in_its_own_family():
    items, gate = _store()
    none = [_items("q-big", f"{c}+system:none", s, seed=5)
            for c, s in (("baseline", 0.6), ("instruct", 0.6))]  # fmt: skip
    rules, _ = load_rules()
    t = named_contrasts(by_protocol(Inputs(pd.concat([items, *none]), gate)), MODELS, rules)
    sp = t[t["holm family"] == "system prompt (part 8)"].set_index("test")
    assert list(sp.index) == [
        "q-big: baseline+system:none - baseline, ambig bias",
        "q-big: instruct+system:none - instruct, ambig bias",  # S1 against S1, not baseline
        "q-big: (instruct - baseline) without system prompt minus with, ambig bias"]  # fmt: skip
    effect = {k: _bias(pd.concat([items, *none]), "q-big", f"instruct{k}")
              - _bias(pd.concat([items, *none]), "q-big", f"baseline{k}")
              for k in ("+system:none", "")}  # fmt: skip
    inter = sp.iloc[2]
    assert inter["estimate"] == pytest.approx(effect["+system:none"] - effect[""])
    assert inter["estimate"] > 0.3 and inter["p"] < 0.01
    assert (sp["family_size"] == 3).all()  # a Holm family of its own
    named = t[t["holm family"] == "named contrasts"]
    assert (named["family_size"] == len(named)).all()


def test_each_model_gets_its_own_last_round_and_law_steps():
    """Rounds: a model with 3 rounds beside one with 6 gets round 3 - round 0 (not nothing).
    Law school: a model without chain-of-thought answers keeps Q+IF - Q. A model asked
    without a system prompt under baseline only gets no system-prompt interaction row."""
    import numpy as np

    from tests.test_verdicts import _law

    items, gate = _store()
    short = _items("q-small", "baseline", 0.6, seed=0).assign(round=3)
    rng = np.random.default_rng(0)
    white = rng.uniform(0.3, 0.7, 40)
    law = pd.concat([_law("q-big", c, white - s, white)
                     for c, s in (("baseline", 0.0), ("instruct", 0.05), ("cot+sample:T1", 0.1))]
                    + [_law("q-small", c, white - s, white)
                       for c, s in (("baseline", 0.0), ("instruct", 0.05))])  # fmt: skip
    lone = _items("q-small", "baseline+system:none", 0.6, seed=9)
    rules, _ = load_rules()
    t = named_contrasts(Inputs(pd.concat([items, short, lone]), gate, law), MODELS, rules)
    rounds = t[t["contrast"] == "6"]["test"].tolist()
    assert "q-small: baseline (round 3) - baseline, ambig bias" in rounds
    assert "q-big: instruct (round 6) - instruct, ambig bias" in rounds
    law_tests = t[t["contrast"] == "7"]["test"].tolist()
    assert "q-small: parity under instruct - under baseline" in law_tests
    assert "q-big: parity under cot - under baseline" in law_tests
    assert not any("q-small: parity under cot" in x for x in law_tests)
    system = t[t["holm family"] == "system prompt (part 8)"]
    assert system.empty  # q-small lacks S1 without a system prompt: no row, no NaN test
