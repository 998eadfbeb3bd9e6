"""The pre-registered study's named contrasts (docs/results/preregistration.md, "Descriptive
contrasts", numbered as there): paired differences on the same items, per model that passes
the validity gate for the rules' readout, ambiguous BBQ bias, with the verdicts' cluster
bootstrap and permutation test, all in ONE Holm family. The report's paired table adjusts
over its every row (thousands), where no p could reach alpha; these are the contrasts named
before the data. A contrast whose conditions a store lacks is left out, not failed.

Winogender (contrast 8) is estimates, not tests: its r, Match Stats error and slope are in the
Winogender tables."""

from __future__ import annotations

import pandas as pd

from selfcorrect.engine import SYSTEM_SUFFIX
from selfcorrect.metrics.choices import unknown_rate
from selfcorrect.rules_file import Rules
from selfcorrect.verdicts import (
    Evidence,
    Inputs,
    classify,
    gather_evidence,
    interaction_test,
    law_model,
    paired_test,
    side_interaction,
    tests_table,
)

ROUND_TAG = " (round {})"  # a later round's answers, as a condition of their own

# (number, condition, reference); the report reads a sampled "cot+sample:T1" as "cot"
# (verdicts.by_protocol)
PAIRED = [
    ("1", "instruct", "baseline"),
    ("2", "s4", "baseline"),
    ("2", "s4", "instruct"),
    ("3", "prefer-unknown", "baseline"),
    ("3", "s4", "prefer-unknown"),
    ("4", "negation", "baseline"),
    ("5", "cot", "instruct"),
]
ROUNDS = ("baseline", "instruct")  # contrast 6: last round - round 0 after each
INTERACTION = ("instruct", "baseline")  # contrast 9: larger - smaller model of one family


def _with_last_round(ev: Evidence, items: pd.DataFrame, readout: str) -> dict[str, int]:
    """Adds each model's last-round answers of the rounds conditions to the evidence, named
    'condition (round R)' with that model's own last round R; returns R per model (models
    without rounds are absent)."""
    if items.empty:
        return {}
    part = items[(items["readout"] == readout) & items["condition"].isin(ROUNDS)]
    last = {m: int(r) for m, r in part.groupby("model")["round"].max().items() if r > 0}
    late = part[[last.get(m) == r for m, r in zip(part["model"], part["round"], strict=True)]]
    if not late.empty:
        tags = [ROUND_TAG.format(last[m]) for m in late["model"]]
        ev.items = pd.concat([ev.items, late.assign(condition=late["condition"] + tags)],
                             ignore_index=True)  # fmt: skip
    return last


def _unknown_rate(ev: Evidence, model: str, condition: str, uids: set) -> float:
    """The share of 'unknown' among the answered ambiguous items of the test."""
    d = ev.items
    return unknown_rate(d[(d["model"] == model) & (d["condition"] == condition)
                          & (d["context_condition"] == "ambig") & d["uid"].isin(uids)])  # fmt: skip


def _family_pairs(ev: Evidence) -> list[tuple[str, str]]:
    """(larger, smaller) for every two gate-passing models of one family."""
    out = []
    models = sorted(ev.eligible, key=ev.params)
    for i, small in enumerate(models):
        for big in models[i + 1 :]:
            fam = ev.models.get(small, {}).get("family")
            if fam and fam == ev.models.get(big, {}).get("family"):
                out.append((big, small))
    return out


def _system_tests(ev: Evidence, unknown) -> None:
    """Part 8: per gate-passing model asked without a system prompt, baseline and S1 without
    it minus with the template's default, and the S1 effect without minus with (an
    interaction within the model: the permutation swaps the two settings within templates)."""
    none = SYSTEM_SUFFIX + "none"
    for model in sorted(ev.eligible, key=ev.params):
        if not ev.ran(model, "baseline" + none, "instruct" + none):
            continue
        for cond in ("baseline", "instruct"):
            unknown(paired_test(ev, "8s", model, cond + none, cond, "bias", "ambig", False),
                    model, cond + none, cond)  # fmt: skip
        label = f"{model}: (instruct - baseline) without system prompt minus with, ambig bias"
        without = (model, "instruct" + none, "baseline" + none)
        side_interaction(ev, "8s", without, (model, "instruct", "baseline"), "bias", "ambig",
                         False, label)  # fmt: skip


def named_contrasts(inputs: Inputs, models: dict[str, dict], rules: Rules) -> pd.DataFrame:
    """One row per test: its family (the named contrasts; the system-prompt comparison of
    part 8, a Holm family of its own), contrast number, the verdicts' test columns, and for BBQ
    the rate of 'unknown' answers (ambiguous items) under the condition and its reference."""
    ev = gather_evidence(inputs, models, rules)
    named = _named(ev, inputs.items, rules.readout)
    ev.tests = []  # the same answers; a second family
    unknown: dict[int, str] = {}
    _system_tests(ev, _recorder(ev, unknown))
    classify(ev)
    system = _table(ev, unknown)
    return pd.concat([named.assign(**{"holm family": "named contrasts"}),
                      system.assign(**{"holm family": "system prompt (part 8)"})],
                     ignore_index=True)  # fmt: skip


def _recorder(ev: Evidence, unknown: dict[int, str]):
    def add(test, model, cond, ref):
        if test is not None:
            uids = ev.uids(model, cond) & ev.uids(model, ref)  # the test's items
            rates = [_unknown_rate(ev, model, c, uids) for c in (cond, ref)]
            unknown[id(test)] = " / ".join(f"{r:.0%}" if r == r else "n/a" for r in rates)

    return add


def _table(ev: Evidence, unknown: dict[int, str]) -> pd.DataFrame:
    table = tests_table(ev).rename(columns={"hypothesis": "contrast"})
    table.insert(len(table.columns) - 1, "unknown rate (condition / reference)",
                 [unknown.get(id(t), "") for t in ev.tests])  # fmt: skip
    return table.drop(columns=["range"])


def _named(ev: Evidence, items: pd.DataFrame, readout: str) -> pd.DataFrame:
    last = _with_last_round(ev, items, readout)
    unknown: dict[int, str] = {}
    add = _recorder(ev, unknown)

    for model in sorted(ev.eligible, key=ev.params):
        for number, cond, ref in PAIRED:
            add(paired_test(ev, number, model, cond, ref, "bias", "ambig", False),
                model, cond, ref)  # fmt: skip
        for cond in ROUNDS if model in last else ():
            late = cond + ROUND_TAG.format(last[model])
            add(paired_test(ev, "6", model, late, cond, "bias", "ambig", False),
                model, late, cond)  # fmt: skip
    for big, small in _family_pairs(ev):
        interaction_test(ev, "9", big, small, *INTERACTION, "bias", "ambig", False)
    for model in ev.law_models():  # the steps this model has answers for
        conds = set(ev.law.loc[ev.law["model"] == model, "condition"])
        steps = [s for s in (["instruct", "baseline"], ["cot", "baseline"]) if s[0] in conds]
        law_model(ev, "7", steps, model, False)
    classify(ev)  # one family: every test above
    return _table(ev, unknown)
