"""Law-school metrics on hand-computed cases, and whole fake runs."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from selfcorrect.metrics import law


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
    ps = np.array([0.9, 0.7, 0.6, 0.4, 0.3, 0.6, 0.8, 0.8])
    ls = np.repeat([30, 35, 40, 45], 2)
    assert s.r_lsat == pytest.approx(np.corrcoef(ps, ls)[0, 1])
    assert s.parity_lo <= s.parity <= s.parity_hi


def test_paired_condition_difference_on_the_same_students():
    base = frame([0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    inst = frame([0.8, 0.7, 0.6], [0.5, 0.5, 0.5], condition="instruct")
    p = law.paired(pd.concat([base, inst]), n_boot=200).iloc[0]
    assert p["diff"] == pytest.approx((0.3 + 0.2 + 0.1) / 3) and p.n_students == 3
    # identical answers: parity 0 with an honest, not a zero-width, interval
    s = law.summary(base, n_boot=200).iloc[0]
    u = 1 - 0.025 ** (1 / 3)
    assert s.parity == 0 and s.parity_lo == pytest.approx(-u) and s.parity_hi == pytest.approx(u)


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
