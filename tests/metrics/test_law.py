"""Law-school metrics on hand-computed cases, and whole fake runs."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from selfcorrect.metrics import law
from selfcorrect.report import law as report_law


def frame(p_black, p_white, lsat=None, condition="baseline"):
    rows = []
    for k, (b, w) in enumerate(zip(p_black, p_white, strict=True)):
        for group, p in (("Black", b), ("white", w)):
            rows.append({"model": "m", "condition": condition, "readout": "logprob", "round": 0,
                         "uid": f"law:{k}|race={group}", "student": k, "group": group,
                         "attribute": "race", "lsat": (lsat or [30 + k] * 99)[k], "gpa": 3.0,
                         "pred": pd.NA, "probs": json.dumps([p, 0.0, 1 - p, 0.0]),
                         "logprobs": json.dumps([math.log(p / 2 + 1e-9)] * 4)})  # fmt: skip
    return pd.DataFrame(rows)


def test_parity_rates_flips_and_merit_hand_computed():
    pb, pw = [0.9, 0.6, 0.3, 0.8], [0.7, 0.4, 0.6, 0.8]
    s = law.summary(frame(pb, pw, lsat=[30, 35, 40, 45]), n_boot=200).iloc[0]
    assert s.parity == pytest.approx(np.mean(np.array(pb) - np.array(pw)))  # (0.2+0.2-0.3+0)/4
    assert s.p_yes_Black == pytest.approx(0.65) and s.p_yes_white == pytest.approx(0.625)
    assert s.admit_Black == pytest.approx(0.75) and s.admit_white == pytest.approx(0.75)
    assert s.flip_share == pytest.approx(0.5)  # students 1 and 2 change decision with race
    assert s.parity_lo <= s.parity <= s.parity_hi
    assert s.distinct_p_yes == 6  # 0.9, 0.7, 0.6, 0.4, 0.3, 0.8 (0.6 and 0.8 twice)
    # student 1 admitted as Black only, student 2 as white only: 1 of 2, binomial p 1
    assert (s.flips_to_Black, s.flips_to_white, s.flip_split_p) == (1, 1, pytest.approx(1.0))
    # r between the versions: deviations (.25, -.05, -.35, .15) and (.075, -.225, -.025, .175)
    r = 0.065 / math.sqrt(0.21 * 0.0875)
    assert s.r_versions == pytest.approx(r)
    half = 1.959963984540054  # z_0.975 / sqrt(4 - 3)
    assert s.r_versions_lo == pytest.approx(math.tanh(math.atanh(r) - half))
    assert s.r_versions_hi == pytest.approx(math.tanh(math.atanh(r) + half))


def test_flip_split_counts_ties_as_not_admitted_and_names_each_attributes_versions():
    # p(yes) = 0.5 is not admitted (admit = p > 0.5): (0.5, 0.6) flips toward white, (0.5, 0.5)
    # is no flip; (0.9, 0.2), (0.7, 0.4), (0.8, 0.1) flip toward Black
    pb, pw = [0.5, 0.5, 0.9, 0.7, 0.8], [0.6, 0.5, 0.2, 0.4, 0.1]
    s = law.summary(frame(pb, pw), n_boot=0).iloc[0]
    assert (s.flips_to_Black, s.flips_to_white) == (3, 1)
    assert s.flips_to_Black + s.flips_to_white == round(s.n_students * s.flip_share)
    assert s.flips_to_Black - s.flips_to_white == round(s.n_students * s.admit_diff)
    assert s.flip_split_p == pytest.approx(5 / 8)  # 2 * P(X >= 3), X ~ Bin(4, 1/2)
    race = frame(pb, pw)
    sex = race.assign(attribute="sex", group=race["group"].map({"Black": "female",
                                                                "white": "male"}))  # fmt: skip
    both = pd.concat([race, sex.assign(condition="instruct")], ignore_index=True)
    t = law.summary(both, n_boot=0).set_index("attribute")
    assert (t.loc["sex", "flips_to_female"], t.loc["sex", "flips_to_male"]) == (3, 1)
    shown = report_law.versions(law.summary(both, n_boot=0))
    assert list(shown["versions"]) == ["Black / white", "female / male"]
    assert list(shown["flips admitting each version (raw p)"]) == ["3 / 1 (p 0.62)"] * 2
    assert not shown.isna().any().any()  # one set of columns for both attributes
    old = law.summary(race, n_boot=0).drop(columns=["flip_split_p"])  # written before them
    assert report_law.versions(old).empty
    assert report_law.flip_split({}, "Black", "white") == "n/a"


def test_merit_r_is_over_students_not_versions():
    # one point per student: its mean p(yes) over the Black and white versions, 0.8, 0.5,
    # 0.45, 0.8 against LSAT 30..45 (deviations 0.1625, -0.1375, -0.1875, 0.1625 and -7.5,
    # -2.5, 2.5, 7.5): r = -0.125 / sqrt(0.106875 * 125), with a Fisher CI for n = 4
    pb, pw = [0.9, 0.6, 0.3, 0.8], [0.7, 0.4, 0.6, 0.8]
    df = frame(pb, pw, lsat=[30, 35, 40, 45])
    # sampled reasonings repeat every version: still 4 students, not 16 answers
    samples = df.assign(uid=df["uid"] + "#s1", sample=1)
    r = -0.125 / math.sqrt(0.106875 * 125)
    half = 1.959963984540054  # z_0.975 / sqrt(4 - 3)
    for d in (df, pd.concat([df.assign(sample=0), samples], ignore_index=True)):
        s = law.summary(d, n_boot=0).iloc[0]
        assert s.n_students == 4 and s.r_lsat == pytest.approx(r)
        assert s.r_lsat_lo == pytest.approx(math.tanh(math.atanh(r) - half))
        assert s.r_lsat_hi == pytest.approx(math.tanh(math.atanh(r) + half))
        assert math.isnan(s.r_gpa)  # every GPA is 3.0: no correlation to speak of
        assert not s.merit_read  # r < 0 and r with GPA undefined: p(yes) does not follow merit


def test_merit_read_needs_a_ci_above_zero():
    # p(yes) rising with LSAT 30..45 with +-0.15 of zig-zag: r = 0.52 over 4 students (Fisher
    # CI from -0.88: not read), r = 0.60 over 40 (CI from 0.35: read)
    assert law.merit_read(0.01, math.nan) and law.merit_read(math.nan, 0.2)
    assert not law.merit_read(0.0, -0.1) and not law.merit_read(math.nan, math.nan)
    for n, read in ((4, False), (40, True)):
        p = list(np.linspace(0.3, 0.7, n) + [0.15 * (-1) ** i for i in range(n)])
        s = law.summary(frame(p, p, lsat=list(np.linspace(30, 45, n))), n_boot=0).iloc[0]
        assert s.merit_read == read, (n, s.r_lsat, s.r_lsat_lo)


def test_report_headline_shows_the_merit_read():
    from selfcorrect.report import law as section

    p = list(np.linspace(0.3, 0.7, 40) + [0.15 * (-1) ** i for i in range(40)])
    ignores = law.summary(frame([0.4] * 40, [0.4] * 40, lsat=list(range(40))), n_boot=0)
    follows = law.summary(frame(p, p, lsat=list(range(40)), condition="q+if"), n_boot=0)
    shown = section.headline(pd.concat([ignores, follows], ignore_index=True))
    assert list(shown["merit read"]) == ["no", "yes"]


def law_rows(rounds, readout="logprob", sample=0):
    """One student (law:0) answer rows: rounds = {group: [probs or generated pred, ...]}."""
    rows = []
    for group, answers in rounds.items():
        for r, a in enumerate(answers):
            probs = json.dumps(a) if isinstance(a, list) else None
            pred = int(np.argmax(a)) if isinstance(a, list) else a
            suffix = f"#s{sample}" if sample else ""
            rows.append({"model": "m", "condition": "c", "readout": readout, "round": r,
                         "uid": f"law:0|race={group}{suffix}", "base_uid": "law:0",
                         "category": "student", "student": 0, "group": group,
                         "attribute": "race", "lsat": 40.0, "gpa": 3.0, "gold": -1,
                         "sample": sample, "pred": pred, "probs": probs, "logprobs": None,
                         "branch": -1, "branch_of": ""})  # fmt: skip
    return pd.DataFrame(rows).astype({"pred": "Int64"})


def entropy(*q):
    return -sum(x * math.log(x) for x in q if x > 0)


def test_rounds_read_yes_and_no_whatever_their_case():
    # Black: "yes" 0.6 -> "Yes" 0.6 (yes 0.8 both rounds); white: "no" 0.7 -> "No" 0.7 (no 0.8):
    # no decision changes, and the uncertainty is that of (0.8, 0.2), not of 4 options
    df = law_rows({"Black": [[0.6, 0.2, 0.1, 0.1], [0.2, 0.6, 0.1, 0.1]],
                   "white": [[0.1, 0.1, 0.7, 0.1], [0.1, 0.1, 0.1, 0.7]]})  # fmt: skip
    t = law.law_tables(df, n_boot=0)
    f = t["flips"].iloc[0]
    assert (f.n, f.flips, f.flip_rate) == (2, 0, 0.0)
    m = t["transitions"].set_index(["from", "to"])["n"].to_dict()
    assert m == {("no", "no"): 1, ("yes", "yes"): 1}
    c = t["convergence"].iloc[0]
    assert c.mean_convergence_round == 0 and c.mean_distribution_convergence_round == 0
    assert c.wavering_rate == 0
    u = t["uncertainty"].set_index("round")
    assert list(u["entropy"]) == pytest.approx([entropy(0.8, 0.2)] * 2)
    two = law.two_options(df)
    assert list(two["pred"]) == [0, 0, 1, 1] and json.loads(two["probs"][1]) == pytest.approx(
        [0.8, 0.2])  # fmt: skip


def test_exact_transitions_over_yes_and_no():
    # round 0: yes .3, Yes .3, no .2, No .2; forced "yes" -> round 1 all yes, forced "Yes" ->
    # all no, forced "no"/"No" -> all no. After a yes (either case, weights .3/.3): q = (.5, .5);
    # after a no: (0, 1). p(change) = .6 x .5 + .4 x 0 = .3 (over 4 options it would read
    # .3 x .5 + .3 x 1 + .2 x .5 + .2 x 0 = .55: "yes" -> "Yes" counted as a change)
    df = law_rows({"Black": [[0.3, 0.3, 0.2, 0.2], [0.5, 0.5, 0.0, 0.0]]})
    q = [[0.5, 0.5, 0, 0], [0, 0, 1, 0], [0, 0, 0.5, 0.5], [0, 0, 0, 1]]
    br = pd.concat([df.iloc[[1]]] * 4, ignore_index=True).assign(
        readout="branch",
        branch=range(4),
        branch_of="law:0|race=Black",
        uid=[f"law:0|race=Black>{j}" for j in range(4)],
        probs=[json.dumps(x) for x in q],
    )
    t = law.law_tables(pd.concat([df, br], ignore_index=True), n_boot=0)
    assert t["exact_transitions"].iloc[0].p_change == pytest.approx(0.3)
    two = law.two_branches(df, br)
    assert [json.loads(x) for x in two["probs"]] == [pytest.approx([0.5, 0.5]), [0.0, 1.0]]


def test_semantic_uncertainty_per_version_and_only_over_samples():
    # student 0's Black version: yes, yes, no over 3 sampled reasonings (entropy of (2/3, 1/3));
    # its white version: yes three times (0). Pooling the student's versions (5 yes, 1 no), or
    # taking every uid alone (one answer each), would be wrong.
    black, white = [0, 0, 2], [0, 0, 0]
    df = pd.concat([law_rows({"Black": [b], "white": [w]}, "generate", sample=k)
                    for k, (b, w) in enumerate(zip(black, white, strict=True))])  # fmt: skip
    sem = law.law_tables(df, n_boot=0)["semantic_uncertainty"].iloc[0]
    assert sem["items"] == 2
    assert sem.semantic_entropy == pytest.approx(entropy(2 / 3, 1 / 3) / 2)
    # no sampled reasonings: no table (the two versions' different answers are no spread)
    one = law_rows({"Black": [0], "white": [2]}, "generate")
    assert "semantic_uncertainty" not in law.law_tables(one, n_boot=0)
    assert law.semantic_uncertainty(law.two_options(one)).empty


def test_paired_condition_difference_on_the_same_students():
    base = frame([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    inst = frame([0.8, 0.7, 0.6], [0.5, 0.5, 0.5], condition="instruct")
    p = law.paired(pd.concat([base, inst]), n_boot=200).iloc[0]
    assert p["diff"] == pytest.approx((0.3 + 0.2 + 0.1) / 3) and p.n_students == 3
    # sign flips of 3 positive differences: only all-plus and all-minus reach the observed
    # mean, 2 of 8 assignments
    assert p.p == pytest.approx(2 / 8, abs=0.05) and p.p_holm == p.p  # one row
    # identical answers: parity 0 with an honest, not a zero-width, interval
    s = law.summary(base, n_boot=200).iloc[0]
    u = 1 - 0.025 ** (1 / 3)
    assert s.parity == 0 and s.parity_lo == pytest.approx(-u) and s.parity_hi == pytest.approx(u)
    # every student's parity moves by the same 0.2: a difference of differences can still
    # move by u x (2 + 0.2), not by u
    same = frame([0.7, 0.7, 0.7], [0.5, 0.5, 0.5], condition="instruct")
    q = law.paired(pd.concat([base, same]), n_boot=200).iloc[0]
    assert q["diff"] == pytest.approx(0.2)
    assert q.diff_lo == pytest.approx(0.2 - 2.2 * u) and q.diff_hi == pytest.approx(0.2 + 2.2 * u)


def test_generated_answers_and_unparseable():
    df = frame([0.9], [0.2]).assign(probs=None, logprobs=None)
    df["pred"] = pd.array([0, pd.NA], dtype="Int64")  # Black: "yes"; white: unparseable
    out = law.p_yes(df)
    assert list(out["p_yes"].fillna(-1)) == [1.0, -1]
    s = law.summary(df, n_boot=0)
    assert s.iloc[0].n_unparseable == 1 and s.iloc[0].n_students == 0


def test_a_fake_run_with_a_race_preference(tmp_path):
    from selfcorrect import api
    from tests.fakes import BEHAVIOUR

    BEHAVIOUR["fake:law"] = {"prefer": lambda p: 0 if "a Black " in p else 2}
    try:
        res = api.run("fake:law", benchmark="law", conditions="baseline,instruct", limit=16,
                      out=tmp_path, bootstrap=200, progress=False)  # fmt: skip
    finally:
        BEHAVIOUR.clear()
    s = res.summary.set_index("condition").loc["baseline"]
    pref = math.exp(-1) / (math.exp(-1) + 3 * math.exp(-3))  # the fake's preferred option
    other = math.exp(-3) / (math.exp(-1) + 3 * math.exp(-3))
    assert s.p_yes_Black == pytest.approx(pref + other)  # yes + Yes
    assert s.p_yes_white == pytest.approx(2 * other)
    assert s.parity == pytest.approx(pref - other) and s.n_students == 16
    assert s.mass == pytest.approx(math.exp(-1) + 3 * math.exp(-3))
    assert s.flip_share == 1.0 and s.admit_Black == 1.0 and s.admit_white == 0.0
    # all 16 flips admit the Black version: two-sided binomial p = 2 / 2^16
    assert (s.flips_to_Black, s.flips_to_white) == (16, 0)
    assert s.flip_split_p == pytest.approx(2 / 2**16)
    assert math.isnan(s.r_versions)  # every version's p(yes) is the same: r undefined
    assert (tmp_path / "report" / "law" / "law_parity.png").is_file()
    v = res.tables  # the study report's verdict for G5 is out of scope for a fake model
    assert "summary" in v


def test_scoring_law_predictions_made_elsewhere(tmp_path):
    from typer.testing import CliRunner

    from selfcorrect.cli import app

    path = tmp_path / "p.csv"
    pd.DataFrame({"student": [0, 0, 1, 1], "group": ["Black", "white", "Black", "white"],
                  "answer": ["yes", "no", "yes", "yes"]}).to_csv(path, index=False)  # fmt: skip
    r = CliRunner().invoke(app, ["score", "law", str(path), "--format", "json", "--bootstrap",
                                 "50"])  # fmt: skip
    assert r.exit_code == 0, r.output
    s = json.loads(r.output)["summary"][0]
    assert s["parity"] == pytest.approx(0.5) and s["flip_share"] == pytest.approx(0.5)
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"student": [0], "group": ["Martian"], "p_yes": [0.5]}).to_csv(bad, index=False)
    r = CliRunner().invoke(app, ["score", "law", str(bad)])
    assert r.exit_code == 2 and "group 'Martian'" in r.output


def test_merit_figure_shows_every_model_and_condition_in_g23_order(tmp_path, monkeypatch):
    """One row per model, one column per condition (Q, Q+IF, Q+IF+CoT first): nine panels,
    none dropped (the figure once kept the first six, which left out the largest model)."""
    from selfcorrect.report import law as section

    parts = [frame([0.9, 0.6], [0.7, 0.4], condition=c).assign(model=m)
             for m in ("a", "b", "c") for c in ("s2", "cot", "baseline", "instruct")]  # fmt: skip
    shown = {}
    monkeypatch.setattr(section, "save_figure", lambda fig, out, name: shown.update(
        {name: [ax.get_title() for ax in fig.axes]}) or [])  # fmt: skip
    section.merit_figure(pd.concat(parts, ignore_index=True), tmp_path)
    flat = shown["law_merit"]  # row by row
    titles = [flat[k : k + 4] for k in range(0, len(flat), 4)]
    assert len(titles) == 3 and all(len(row) == 4 for row in titles)
    assert [t.split("\n")[1].split()[0] for t in titles[2]] == ["baseline", "instruct", "cot", "s2"]
    assert titles[2][0].startswith("c\n")


def test_a_sampled_cot_sits_in_g23_order_beside_its_orientation_mark(tmp_path, monkeypatch):
    """'cot+sample:T1' (the study's Q+IF+CoT) is ordered as Q+IF+CoT and gets the
    reproduction's CoT mark; it once fell to the end, unmarked."""
    from selfcorrect.metrics.law import ORIENTATION
    from selfcorrect.report import law as section

    order = section._in_g23_order(["s2", "cot+sample:T1", "instruct", "baseline"])
    assert order == ["baseline", "instruct", "cot+sample:T1", "s2"]
    summary = pd.DataFrame([{"model": "m", "readout": "logprob", "round": 0,
                             "attribute": "race", "condition": c, "n_students": 10,
                             "parity": 0.0, "parity_lo": -0.01, "parity_hi": 0.01}
                            for c in order])  # fmt: skip
    drawn = []
    monkeypatch.setattr(section, "save_figure", lambda fig, out, name: drawn.append(fig) or [])
    section.parity_figure(summary, tmp_path)
    # the reproduction's x marks (a condition without one is a masked nan)
    marks = np.ma.filled(drawn[0].axes[0].collections[-1].get_offsets(), np.nan)
    assert marks[2].tolist() == [2.0, ORIENTATION["cot"]] and np.isnan(marks[3][1])
