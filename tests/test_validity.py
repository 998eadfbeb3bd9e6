"""Whole runs of a model with a letter habit (the fake backend always prefers (c)): the letter
readout reproduces the habit as a 'bias', the diagnostics and the gate flag it, and under
cyclic option orders it scores chance: ambiguous accuracy 1/3 and s_AMB 0."""

import sqlite3

import pytest

from selfcorrect import api
from selfcorrect.engine import condition_key
from selfcorrect.store import Store
from tests.fakes import BEHAVIOUR


@pytest.fixture(autouse=True)
def letter_c():
    BEHAVIOUR["fake:c"] = {"prefer": lambda prompt: 2}
    yield
    BEHAVIOUR.clear()


def overall(res, context):
    s = res.summary
    return s[(s.group == "overall") & (s.context == context) & (s.condition == "baseline")].iloc[0]


def test_a_letter_habit_without_and_with_permutation(tmp_path):
    common = dict(conditions="baseline,oracle", limit=66, bootstrap=100, progress=False)
    plain = api.run("fake:c", permute="none", out=tmp_path / "none", **common)
    gate = plain.tables["gate"].set_index("readout").loc["logprob"]
    assert gate.verdict == "does not follow the format"
    assert "top letter share 1.000 > 0.8" in gate.reasons
    v = plain.tables["validity"]
    assert v[v.condition == "baseline"].iloc[0].share_c == 1.0
    amb = overall(plain, "ambig")
    out = Store(tmp_path / "none", read_only=True).outcomes()
    base = out[(out.condition == "baseline") & (out.context_condition == "ambig")]
    assert amb.accuracy == pytest.approx((base["gold"] == 2).mean())  # the share of golds at (c)

    cyc = api.run("fake:c", permute="cyclic", out=tmp_path / "cyclic", **common)
    amb = overall(cyc, "ambig")
    assert amb.accuracy == pytest.approx(1 / 3) and amb.bias == pytest.approx(0.0)
    dis = overall(cyc, "disambig")
    assert dis.accuracy == pytest.approx(1 / 3) and dis.bias == pytest.approx(0.0)
    v = cyc.tables["validity"].set_index("condition").loc["baseline"]
    assert v.position_consistency == 0.0 and v.tie_rate == 1.0 and v.n_asked == 3 * v.n_items
    gate = cyc.tables["gate"].set_index("readout").loc["logprob"]
    assert gate.verdict == "does not follow the format"
    assert "position consistency 0.000 < 0.5" in gate.reasons
    with sqlite3.connect(tmp_path / "cyclic" / "results.sqlite") as c:  # every order is stored
        n = c.execute("SELECT COUNT(*) FROM answers WHERE condition='baseline'").fetchone()[0]
    assert n == 3 * 66


def test_a_system_prompt_is_sent_and_kept_apart(tmp_path):
    common = dict(conditions="baseline", limit=4, bootstrap=0, progress=False, permute="none",
                  out=tmp_path)  # fmt: skip
    api.run("fake:a", **common)
    api.run("fake:a", system_prompt="Be fair.", **common)
    api.run("fake:a", system_prompt="none", **common)
    with sqlite3.connect(tmp_path / "results.sqlite") as c:
        rows = c.execute("SELECT condition, prompt FROM answers").fetchall()
    keys = {k for k, _ in rows}
    assert keys == {"baseline", condition_key("baseline", system="Be fair."),
                    "baseline+system:none"}  # fmt: skip
    given = [p for k, p in rows if k == condition_key("baseline", system="Be fair.")]
    assert all(p.startswith("Be fair.\n\nHuman: ") for p in given) and len(given) == 4
    plain = {p for k, p in rows if k == "baseline"}
    assert plain == {p for k, p in rows if k == "baseline+system:none"}  # G23's text: no system
