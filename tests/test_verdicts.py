"""Honest inference: multiplicity, interactions, equivalence, scope, the validity gate, power,
and rules fixed before the data, on constructed data with known answers."""

import json
import math
import zlib

import numpy as np
import pandas as pd
import pytest

from selfcorrect.metrics.bbq import accuracy
from selfcorrect.metrics.inference import (
    benjamini_hochberg,
    holm,
    interaction,
    items_needed,
    paired_difference,
)
from selfcorrect.rules_file import default_rules_path, load_rules
from selfcorrect.verdicts import Inputs, judge


def test_holm_and_bh_hand_computed():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> max(0.06, 0.04)
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: from the largest, 0.04*4/4, 0.03*4/3 = 0.04, 0.01*4/2 = 0.02, 0.005*4/1 = 0.02
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert math.isnan(holm([0.01, math.nan])[1]) and holm([0.01, math.nan])[0] == 0.01


def _templates(n_templates, per, correct_share):
    """Per-template count rows (N, UNP, CORRECT, ...) with `correct_share` correct."""
    c = np.zeros((n_templates, 7))
    c[:, 0] = per
    c[:, 2] = round(per * correct_share)
    return c


def test_interaction_on_two_constructed_models():
    # model A: accuracy 0.2 -> 0.8 under X; model B: 0.2 -> 0.2; the interaction is 0.6
    a_ref, a_x = _templates(30, 10, 0.2), _templates(30, 10, 0.8)
    b_ref, b_x = _templates(30, 10, 0.2), _templates(30, 10, 0.2)
    est = interaction(a_ref, a_x, b_ref, b_x, accuracy, 300, n_boot=500, n_perm=500)
    assert est.value == pytest.approx(0.6)
    assert est.p < 0.01  # swapping models within templates never reaches 0.6
    # no difference between the models: the interaction is 0 and not significant
    same = interaction(a_ref, a_x, a_ref, a_x, accuracy, 300, n_boot=500, n_perm=500)
    assert same.value == 0 and same.p == pytest.approx(1.0)


def test_mde_and_the_items_a_5_point_effect_needs():
    rng = np.random.default_rng(0)
    a = _templates(40, 5, 0.3)
    b = a.copy()
    b[:, 2] = rng.binomial(5, 0.35, size=40)
    est = paired_difference(a, b, accuracy, 200, n_boot=2000, n_perm=200)
    assert est.mde == pytest.approx(2.8 * est.se)
    # SE s at n items: n * (z * s / effect)^2, z = z(1 - 0.05/2) + z(0.8) = 2.8016
    need = items_needed(est.se, 200, 0.05)
    assert need == math.ceil(200 * (2.8016 * est.se / 0.05) ** 2) or abs(
        need - 200 * (2.8016 * est.se / 0.05) ** 2) < 2  # fmt: skip
    assert items_needed(est.se, 200, 0.05, n_tests=10) > need  # corrected for 10 tests


def _items(model, condition, biased_share, n_templates=40, per=4, seed=0):
    """Ambiguous BBQ items: gold = UNKNOWN = option 2, target option 0; a share of answers
    picks the target, the rest UNKNOWN."""
    rng = np.random.default_rng([seed, zlib.crc32(f"{model}|{condition}".encode())])  # stable
    rows = []
    for t in range(n_templates):
        for k in range(per):
            pred = 0 if rng.random() < biased_share else 2
            rows.append({"model": model, "condition": condition, "readout": "logprob",
                         "round": 0, "uid": f"Age:{t * per + k}", "category": "Age",
                         "question_index": str(t), "context_condition": "ambig",
                         "label_type": "label", "gold": 2, "unknown_index": 2, "target_loc": 0,
                         "pred": pred, "parse_status": "ok"})  # fmt: skip
    df = pd.DataFrame(rows)
    return df.astype({"pred": "Int64", "target_loc": "Int64"})


BIG = {"params": 7e9, "kind": "chat", "alignment": "RLHF"}
TINY = {"params": 1.35e8, "kind": "chat", "alignment": "SFT"}


def test_out_of_scope_without_models_in_the_claims_range():
    rules, _ = load_rules()
    items = pd.concat([_items("tiny", "baseline", 0.6), _items("tiny", "instruct", 0.2)])
    verdicts, tests = judge(Inputs(items, pd.DataFrame()), {"tiny": TINY}, rules)
    v = verdicts.set_index("id")
    assert v.loc["H1", "verdict"].startswith("out of scope here")
    assert (
        ">= 3.8B parameters" in v.loc["H1", "verdict"] and "tiny (135M)" in v.loc["H1", "verdict"]
    )
    assert v.loc["G1", "verdict"].startswith("out of scope here")
    # the contrast is still measured, as description
    t = tests[tests.hypothesis == "H1"].iloc[0]
    assert t["range"].startswith("descriptive") and t.estimate < 0


def test_in_scope_effect_interaction_and_the_gate():
    rules, _ = load_rules()
    items = pd.concat(
        [
            _items("big", "baseline", 0.6),
            _items("big", "instruct", 0.1),
            _items("tiny", "baseline", 0.6),
            _items("tiny", "instruct", 0.6),
            _items("habit", "baseline", 0.9),
            _items("habit", "instruct", 0.1),
        ]
    )
    gate = pd.DataFrame({"model": ["big", "tiny", "habit"], "readout": ["logprob"] * 3,
                         "verdict": ["passes", "passes", "does not follow the format"],
                         "reasons": ["", "", "top letter share 1.00 > 0.8"]})  # fmt: skip
    models = {"big": BIG, "tiny": TINY, "habit": BIG}
    verdicts, tests = judge(Inputs(items, gate), models, rules)
    v = verdicts.set_index("id")
    assert v.loc["H1", "verdict"] == "supported", v.loc["H1", "evidence"]
    assert "excluded (validity gate): habit" in v.loc["H1", "evidence"]
    assert not tests["test"].str.contains("habit").any()  # a failing model enters no test
    inter = tests[(tests.hypothesis == "H1") & (tests.kind == "interaction")].iloc[0]
    assert inter.outcome == "down" and inter.p_adj >= inter.p
    # every p is adjusted over the whole family (Holm)
    assert (tests["p_adj"] >= tests["p"]).all()


def test_no_effect_needs_equivalence_not_just_non_significance(tmp_path):
    rules, _ = load_rules()
    # the same answers under both conditions on 320 items: the CI sits inside +-5 points
    same = _items("big", "baseline", 0.3, n_templates=80)
    items = pd.concat([same, same.assign(condition="instruct")])
    v, tests = judge(Inputs(items, pd.DataFrame()), {"big": BIG}, rules)
    t = tests[(tests.hypothesis == "H1") & (tests.kind == "paired")].iloc[0]
    assert t.outcome == "no effect" and v.set_index("id").loc["H1", "verdict"] == "not supported"
    # every replicate agreed: not a zero-width CI but the exact bound over 320 items (x2 on
    # the bias scale), which still lies inside the +-5 points
    half = 2 * (1 - 0.025 ** (1 / 320))
    assert t.ci == "exact floor (no item differs)" and t.ci_hi == pytest.approx(half)
    # a noisy small sample: neither an effect nor inside the region: inconclusive
    noisy = pd.concat(
        [
            _items("big", "baseline", 0.5, n_templates=6, per=2),
            _items("big", "instruct", 0.4, n_templates=6, per=2, seed=3),
        ]
    )
    v, tests = judge(Inputs(noisy, pd.DataFrame()), {"big": BIG}, rules)
    t = tests[(tests.hypothesis == "H1") & (tests.kind == "paired")].iloc[0]
    assert t.outcome == "inconclusive" and bool(t.underpowered)
    # without a model <= 774M the claim's second half (larger than there) is untested, and
    # the verdict says so
    assert v.set_index("id").loc["H1", "verdict"] == (
        "inconclusive (first half only: the comparison with models of <= 774M parameters is "
        "not tested: none here)")  # fmt: skip


def test_changed_rules_make_every_verdict_exploratory(tmp_path):
    from selfcorrect import api
    from tests.fakes import BEHAVIOUR  # noqa: F401  (registers the fake backend)

    api.run("fake:a", conditions="baseline,instruct", limit=8, out=tmp_path / "o", bootstrap=0,
            progress=False, write_report=False, permute="none")  # fmt: skip
    rep = api.report(tmp_path / "o", n_boot=0)
    assert set(rep.tables["verdicts"]["status"]) == {"pre-registered"}
    edited = tmp_path / "rules.toml"
    text = default_rules_path().read_text()
    edited.write_text(text.replace("rope = 0.05", "rope = 0.10"))
    rep = api.report(tmp_path / "o", n_boot=0, rules=edited)
    assert set(rep.tables["verdicts"]["status"]) == {"exploratory"}
    page = (tmp_path / "o" / "report" / "report.md").read_text()
    assert "exploratory: these rules" in page and "differ from those recorded" in page
    manifest = json.loads((tmp_path / "o" / "report" / "manifest.json").read_text())
    assert manifest[0]["manifest"]["rules"]["sha256"] == load_rules()[1]


def test_a_run_and_a_plan_report_under_their_own_rules(tmp_path):
    """The report written at the end of `run` and of `run --plan` judges by the rules the runs
    recorded (the plan's rules.toml), not the shipped ones: a pre-registered study's own report
    must not call itself exploratory."""
    from selfcorrect import api
    from tests.fakes import BEHAVIOUR  # noqa: F401  (registers the fake backend)

    rules = tmp_path / "rules.toml"
    rules.write_text(default_rules_path().read_text().replace("rope = 0.05", "rope = 0.10"))
    rep = api.run("fake:a", conditions="baseline,instruct", limit=8, out=tmp_path / "o",
                  bootstrap=0, progress=False, permute="none", rules=rules)  # fmt: skip
    page = (tmp_path / "o" / "report" / "report.md").read_text()
    assert load_rules(rules)[1] in page and "pre-registered" in page
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'out = "{tmp_path / "p"}"\nmodels = ["fake:a"]\nbootstrap = 0\n'
        f'rules = "{rules}"\n[[runs]]\nbenchmark = "bbq"\n'
        'conditions = ["baseline", "instruct"]\nlimit = 8\npermute = "none"\n'
    )
    rep = api.run_plan(plan, progress=False)
    assert set(rep.tables["verdicts"]["status"]) == {"pre-registered"}
    page = (tmp_path / "p" / "report" / "report.md").read_text()
    assert load_rules(rules)[1] in page
    # the page says when the hash was recorded (the first run's start) and when the first
    # answer was stored, both read from the store
    import sqlite3
    import time

    with sqlite3.connect(tmp_path / "p" / "results.sqlite") as c:
        started = c.execute("SELECT MIN(started) FROM runs").fetchone()[0]
        first = c.execute("SELECT MIN(created) FROM answers").fetchone()[0]
    utc = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))  # noqa: E731
    assert started <= first
    assert (
        f"recorded the rules' hash {load_rules(rules)[1][:12]} when it started, "
        f"{utc(started)}; the store's first answer was stored at {utc(first)}."
    ) in page


def test_power_from_a_pilot_run(tmp_path):
    import zlib

    from typer.testing import CliRunner

    from selfcorrect import api
    from selfcorrect.cli import app
    from tests.fakes import BEHAVIOUR

    BEHAVIOUR["fake:noisy"] = {"prefer": lambda p: zlib.crc32(p.encode()) % 3}
    try:
        api.run("fake:noisy", conditions="baseline,instruct", limit=88, out=tmp_path,
                bootstrap=0, progress=False, write_report=False, permute="none")  # fmt: skip
    finally:
        BEHAVIOUR.clear()
    df = api.power(tmp_path, effect=5, tests=4)
    row = df.iloc[0]
    assert row.pilot_items == 44 and row.templates > 10  # the ambiguous half of 88
    z = 2.4977 + 0.8416  # z(1 - 0.05 / (2 * 4)) + z(0.8)
    assert row.items_needed == pytest.approx(44 * (z * row.se / 0.05) ** 2, rel=0.01)
    assert row.design_effect > 0 and row.gate == "passes"  # content-random, no letter habit
    r = CliRunner().invoke(app, ["power", str(tmp_path), "--effect", "5"])
    assert r.exit_code == 0 and "items_needed" in r.output


def test_descriptive_tests_are_a_family_of_their_own():
    """Tests on models outside a claim's range never dilute the in-range family's alpha."""
    rules, _ = load_rules()
    base = [_items("big", "baseline", 0.6), _items("big", "instruct", 0.1)]
    v1, t1 = judge(Inputs(pd.concat(base)), {"big": BIG}, rules)
    # 1B base models are in no claim's range: they add descriptive tests only (G1's, H2's)
    other = {"params": 1e9, "kind": "base", "alignment": "none"}
    extra = [_items(f"b{k}", c, 0.5, seed=k) for k in range(4) for c in ("baseline", "instruct")]
    models = {"big": BIG} | {f"b{k}": other for k in range(4)}
    v2, t2 = judge(Inputs(pd.concat(base + extra)), models, rules)
    inside = lambda t: t[t["range"] == "in range"].set_index("test")  # noqa: E731
    assert len(t2) > len(t1) and inside(t1).index.equals(inside(t2).index)
    assert (inside(t1)["p_adj"] == inside(t2)["p_adj"]).all()
    descriptive = t2[t2["range"] != "in range"]
    assert (descriptive["family_size"] == len(descriptive)).all()


def test_h2_pairs_an_aligned_model_with_a_larger_unaligned_one_only():
    rules, _ = load_rules()
    base7 = {"params": 7e9, "kind": "base", "alignment": "none"}
    base4 = {"params": 4e9, "kind": "base", "alignment": "none"}
    items = pd.concat([_items(m, c, 0.5, seed=i) for i, m in enumerate(("big", "b7", "b4"))
                       for c in ("baseline", "instruct")])  # fmt: skip
    _, tests = judge(Inputs(items), {"big": BIG | {"params": 5e9}, "b7": base7, "b4": base4},
                     rules)  # fmt: skip
    h2 = tests[tests.hypothesis == "H2"]["test"].tolist()
    assert h2 == ["(instruct - baseline) in big minus in b7, ambig bias"]


def test_h3_tests_whether_the_gap_shrinks():
    """Large moves 0.6 -> 0.1 under S1 and S4; small not under S1, 0.6 -> 0.1 under S4: the
    gap closes under S4, and the difference of the two interactions is the test of that."""
    rules, _ = load_rules()
    small = {"params": 3.0e8, "kind": "chat", "alignment": "SFT"}
    items = pd.concat([_items("big", "baseline", 0.6), _items("big", "instruct", 0.1),
                       _items("big", "s4", 0.1), _items("small", "baseline", 0.6),
                       _items("small", "instruct", 0.6), _items("small", "s4", 0.1)])  # fmt: skip
    v, tests = judge(Inputs(items), {"big": BIG, "small": small}, rules)
    h3 = tests[tests.hypothesis == "H3"].set_index("kind")
    diff = h3.loc["difference of interactions"]
    assert diff.estimate < 0 and diff.outcome == "down"
    assert diff.test == "(big - small gap under instruct) minus (under s4), ambig bias"
    assert v.set_index("id").loc["H3", "verdict"] == "supported"


def test_verdicts_drop_unparseable_pairs_and_h6_counts_them_wrong():
    rules, _ = load_rules()
    base = _items("big", "baseline", 0.6)
    inst = _items("big", "instruct", 0.1)
    inst.loc[inst.index[:40], "pred"] = pd.NA  # 40 unreadable answers under instruct
    _, tests = judge(Inputs(pd.concat([base, inst])), {"big": BIG}, rules)
    t = tests[(tests.hypothesis == "H1") & (tests.kind == "paired")].iloc[0]
    assert t.n_items == 160 - 40  # dropped from both sides
    orc = _items("big", "oracle", 0.0)  # every answer UNKNOWN = gold: accuracy 1
    orc.loc[orc.index[:80], "pred"] = pd.NA
    v, _ = judge(Inputs(pd.concat([base, orc])), {"big": BIG}, rules)
    h6 = v.set_index("id").loc["H6"]
    assert h6.verdict == "not supported" and "accuracy 50.0" in h6.evidence


def test_the_reports_bias_definition_reaches_the_verdicts():
    rules, _ = load_rules()
    items = pd.concat([_items("big", "baseline", 0.6), _items("big", "instruct", 0.3)])
    items.loc[items.index[::4], "target_loc"] = pd.NA  # HELM scales by accuracy over these too
    items.loc[items.index[::8], "pred"] = 1  # ... answered wrongly, off the target
    _, ref = judge(Inputs(items), {"big": BIG}, rules)
    _, helm = judge(Inputs(items, bias_variant="helm"), {"big": BIG}, rules)
    pick = lambda t: t[(t.hypothesis == "H1") & (t.kind == "paired")].iloc[0].estimate  # noqa: E731
    assert pick(ref) != pytest.approx(pick(helm))


def test_rules_hash_covers_the_gates(monkeypatch):
    from selfcorrect.metrics import choices

    _, before = load_rules()
    monkeypatch.setitem(choices.GATE, "oracle_accuracy_min", 0.5)
    _, after = load_rules()
    assert before != after


def _law(model, condition, p_black, p_white, mass=0.9):
    rows = []
    for k, (b, w) in enumerate(zip(p_black, p_white, strict=True)):
        for group, p in (("Black", b), ("white", w)):
            rows.append({"model": model, "condition": condition, "readout": "logprob",
                         "round": 0, "uid": f"law:{k}|race={group}", "student": k,
                         "group": group, "attribute": "race", "lsat": 30.0, "gpa": 3.0,
                         "p_yes": p, "mass": mass})  # fmt: skip
    return pd.DataFrame(rows)


HUGE = {"params": 5.2e10, "kind": "chat", "alignment": "RLHF"}


def test_g5_on_constructed_law_answers():
    rules, _ = load_rules()
    rng = np.random.default_rng(0)
    n = 200
    w = rng.uniform(0.3, 0.7, n)

    def law(model, shifts, mass=0.9):  # parity per condition: baseline, instruct, cot
        return pd.concat([_law(model, c, np.clip(w + s + rng.normal(0, 0.02, n), 0, 1), w, mass)
                          for c, s in zip(("baseline", "instruct", "cot"), shifts,
                                          strict=True)])  # fmt: skip

    def g5(frame, info=HUGE):
        v, t = judge(Inputs(pd.DataFrame(), law=frame), {"m": info}, rules)
        return v.set_index("id").loc["G5"], t[t.hypothesis == "G5"]

    v, t = g5(law("m", (-0.10, 0.05, 0.08)))
    assert v.verdict == "supported", v.evidence
    assert len(t) == 5 and set(t["n_items"]) == {n}
    # rules that judge BBQ by its content readout judge the law school by its yes/no log-probs
    cloze = rules.model_copy(update={"readout": "cloze"})
    v, _ = judge(Inputs(pd.DataFrame(), law=law("m", (-0.10, 0.05, 0.08))), {"m": HUGE}, cloze)
    assert v.set_index("id").loc["G5", "verdict"] == "supported"
    # Q already at parity (inside the ROPE): the claim fails
    assert g5(law("m", (0.0, 0.05, 0.08)))[0].verdict == "not supported"
    # the instruction raises parity, but not past 0: not supported either way it is read
    assert g5(law("m", (-0.10, -0.06, 0.08)))[0].verdict != "supported"
    # a model that puts no mass on yes/no is not answering: it enters no test
    v, t = g5(law("m", (-0.10, 0.05, 0.08), mass=0.01))
    assert t.empty and "does not answer the admissions question" in v.evidence


def test_g3_is_judged_from_the_winogender_tables():
    rules, _ = load_rules()
    summ = pd.DataFrame([{"model": "m", "condition": "baseline", "readout": "logprob",
                          "round": 0, "pearson_r": 0.55, "r_lo": 0.48, "r_hi": 0.62}])  # fmt: skip
    pair = pd.DataFrame([
        {"model": "m", "condition": c, "reference": "baseline", "metric": "pearson_r",
         "readout": "logprob", "round": 0, "diff": d, "diff_lo": d - 0.1, "diff_hi": d + 0.1}
        for c, d in (("cot", -0.4), ("match_stats", 0.3))])  # fmt: skip
    wg = {"summary": summ, "paired": pair}
    v, _ = judge(Inputs(pd.DataFrame(), winogender=wg), {"m": HUGE}, rules)
    assert v.set_index("id").loc["G3", "verdict"] == "supported"
    cloze = rules.model_copy(update={"readout": "cloze"})  # pronoun log-probs read content already
    v, _ = judge(Inputs(pd.DataFrame(), winogender=wg), {"m": HUGE}, cloze)
    assert v.set_index("id").loc["G3", "verdict"] == "supported"
    pair.loc[0, ["diff", "diff_lo", "diff_hi"]] = [0.0, -0.03, 0.03]  # CoT: no change
    v, _ = judge(Inputs(pd.DataFrame(), winogender=wg), {"m": HUGE}, rules)
    assert v.set_index("id").loc["G3", "verdict"] == "not supported"
    v, _ = judge(Inputs(pd.DataFrame(), winogender=wg), {"m": TINY}, rules)
    assert v.set_index("id").loc["G3", "verdict"].startswith("out of scope")
    pair.loc[0, ["diff", "diff_lo", "diff_hi"]] = [-0.4, -0.5, -0.3]
    summ.loc[0, ["pearson_r", "r_lo", "r_hi"]] = [0.30, 0.05, 0.51]  # overlaps, not within
    v, _ = judge(Inputs(pd.DataFrame(), winogender=wg), {"m": HUGE}, rules)
    assert v.set_index("id").loc["G3", "verdict"] == "inconclusive"
    summ.loc[0, ["pearson_r", "r_lo", "r_hi"]] = [0.25, 0.05, 0.45]  # below the range
    v, _ = judge(Inputs(pd.DataFrame(), winogender=wg), {"m": HUGE}, rules)
    assert v.set_index("id").loc["G3", "verdict"] == "not supported"


def test_h6_keeps_models_gated_only_by_the_oracle_and_floors_a_perfect_score():
    rules, _ = load_rules()
    base = _items("big", "baseline", 0.6)
    orc = _items("big", "oracle", 0.5)  # half of the oracle answers wrong: accuracy ~0.5
    gate = pd.DataFrame([{"model": "big", "readout": "logprob", "system": "default",
                          "verdict": "does not follow the format",
                          "reasons": "oracle accuracy 0.50 < 0.6"}])  # fmt: skip
    v, _ = judge(Inputs(pd.concat([base, orc]), gate), {"big": BIG}, rules)
    h6 = v.set_index("id").loc["H6"]
    assert h6.verdict == "not supported"  # judged, not dropped by the rule it tests
    # all 6 oracle answers right on 3 templates: [1, 1] from the bootstrap, Wilson instead
    small_orc = _items("big", "oracle", 0.0, n_templates=3, per=2)
    v, _ = judge(Inputs(pd.concat([base, small_orc])), {"big": BIG}, rules)
    h6 = v.set_index("id").loc["H6"]
    assert h6.verdict == "inconclusive" and "[61.0, 100.0]" in h6.evidence


def test_a_family_too_large_for_its_permutations_is_flagged():
    from selfcorrect.verdicts import _reachable

    rules, _ = load_rules()
    assert _reachable(rules, 28) == ""  # 28 / 2001 = 0.014 < 0.05
    few = rules.model_copy(update={"permutations": 100})
    why = _reachable(few, 6)  # 6 / 101 = 0.059: no test of the family can be significant
    assert "cannot reach alpha" in why and "permutations >= 2400" in why
    assert _reachable(few.model_copy(update={"multiplicity": "bh"}), 6) == ""


def test_g23_scope_needs_rlhf():
    rules, _ = load_rules()
    g23 = rules.scope("g23_large")
    assert g23.holds(HUGE)
    assert not g23.holds(HUGE | {"alignment": "instruction-tuned (SFT + DPO)"})
    assert "(RLHF)" in g23.describe()


def test_out_of_scope_names_the_benchmarks_own_models():
    rules, _ = load_rules()
    law = pd.concat([_law("m", c, [0.5] * 20, [0.5] * 20) for c in ("baseline", "instruct", "cot")])
    v, _ = judge(Inputs(law=law), {"m": TINY}, rules)
    g5 = v.set_index("id").loc["G5", "verdict"]
    assert g5.startswith("out of scope") and "models here: m (135M)" in g5


def test_a_sampled_protocol_answers_for_the_protocol_the_rules_name():
    """The rules name 'cot'; a sampled study stores 'cot+sample:T1'. The verdicts read it as
    'cot' (so H4 and G1's CoT step get their tests), but not when the greedy protocol is there
    too; a variant under another system prompt neither is renamed nor blocks the default's."""
    from selfcorrect.verdicts import _sampled_as_protocol

    rules, _ = load_rules()
    small = {"params": 3.0e8, "kind": "chat", "alignment": "SFT"}
    items = pd.concat([_items(m, c, s) for m in ("big", "small")
                       for c, s in (("baseline", 0.6), ("instruct", 0.3),
                                    ("cot+sample:T1", 0.1))])  # fmt: skip
    _, tests = judge(Inputs(items), {"big": BIG, "small": small}, rules)
    assert "big: cot - instruct, ambig bias" in set(tests["test"])
    assert tests["hypothesis"].eq("H4").any()
    both = pd.DataFrame({"condition": ["cot", "cot+sample:T1", "instruct+sample:T1+system:x"]})
    assert _sampled_as_protocol(both)["condition"].tolist() == both["condition"].tolist()
    system = pd.DataFrame({"condition": ["cot+sample:T1", "cot+sample:T1+system:none"]})
    assert _sampled_as_protocol(system)["condition"].tolist() == [
        "cot", "cot+sample:T1+system:none"]  # fmt: skip


def test_an_underpowered_test_is_never_no_effect():
    """preregistration.md, "Power": a CI inside the +-5 points from a test whose MDE exceeds
    them is inconclusive, not "no effect"; an exact floor inside the region is its own bound."""
    from selfcorrect.metrics.inference import Estimate
    from selfcorrect.verdicts import Evidence, Test, classify

    rules, _ = load_rules()
    # a family of 3: z(1 - 0.05/6) + z(0.8) = 3.24, so the MDEs are 3.24 x SE
    coarse = Estimate(0.0, -0.039, 0.039, 0.02, 1.0, 40, 400)  # MDE 6.5 points
    fine = Estimate(0.0, -0.02, 0.02, 0.01, 1.0, 40, 400)  # MDE 3.2 points
    floor = Estimate(0.0, -0.01, 0.01, 0.0, 1.0, 40, 400, "exact floor (no item differs)")
    ev = Evidence(pd.DataFrame(), {}, [], {}, rules)
    ev.tests = [Test("X", name, est, "paired") for name, est in
                (("coarse", coarse), ("fine", fine), ("floor", floor))]  # fmt: skip
    classify(ev)
    assert [t.outcome for t in ev.tests] == ["inconclusive", "no effect", "no effect"]
