"""Sweep plans: validation with one-line errors, the ladder, and a real two-run plan."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcorrect.cli import app
from selfcorrect.errors import SelfCorrectError
from selfcorrect.plan import load_plan
from selfcorrect.registry import REGISTRY
from selfcorrect.spec import LADDER, RunSpec
from selfcorrect.store import Store


def test_ladder_is_the_packaged_models_smallest_first():
    assert RunSpec(models=["ladder"]).models == LADDER
    assert set(LADDER) == set(REGISTRY) and REGISTRY[LADDER[0]].params < REGISTRY[LADDER[-1]].params
    models = RunSpec(models="x.gguf,ladder,x.gguf").models
    assert models[0] == "x.gguf" and len(models) == 1 + len(LADDER)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models = [", "not valid TOML"),
        ("[[runs]]\nconditions = ['baseline']\ncolour = 1", "runs.0: colour: unknown option"),
        ("[[runs]]\nconditions = []", "runs.0: conditions needs at least one name"),
        ("[[runs]]\nconditions = ['baseline']\nmodels = ['x']", "runs.0.models: set it once"),
        ("[[runs]]\nconditions = ['baseline']\nrules = 'r.toml'", "runs.0.rules: set it once"),
        ("[[runs]]\nconditions = ['baseline']\nlimit = -3", "runs.0: limit must be >= 1"),
        ("limit = 'some'\n[[runs]]\nconditions = ['baseline']", "limit"),
        ("models = ['ladder']", "runs: Field required"),
        ("out = 1\n[[runs]]\nconditions = ['baseline']", "out: expected a directory name"),
    ],
)
def test_bad_plans_are_one_line_errors(tmp_path, text, message):
    path = tmp_path / "plan.toml"
    path.write_text(text)
    with pytest.raises(SelfCorrectError, match=message):
        load_plan(path)


@pytest.mark.slow
def test_plan_runs_every_entry_into_one_store_and_reports_verdicts(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        f'out = "{tmp_path / "study"}"\nmodels = ["smollm2-135m-instruct"]\nlimit = 8\n'
        'bootstrap = 50\npermute = "none"\n'
        '[[runs]]\nconditions = ["baseline", "instruct"]\n'
        '[[runs]]\nconditions = ["baseline"]\nrounds = 1\n'
        '[[runs]]\nbenchmark = "winogender"\nconditions = ["baseline"]\nlimit = 6\n'
    )
    res = CliRunner().invoke(app, ["run", "--plan", str(plan), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "verdicts" in res.output and "H1" in res.output
    store = Store(tmp_path / "study")
    counts = dict(
        store.conn.execute(
            "SELECT benchmark || ':' || condition || ':' || round, COUNT(*) FROM answers GROUP BY 1"
        ).fetchall()
    )
    store.close()
    # round 0 of baseline is shared by the first two runs, not repeated
    assert counts == {"bbq:baseline:0": 8, "bbq:instruct:0": 8, "bbq:baseline:1": 8,
                      "winogender:baseline:0": 6}  # fmt: skip
    assert (tmp_path / "study" / "report" / "report.html").is_file()
    bad = tmp_path / "bad.toml"
    bad.write_text('[[runs]]\nconditions = ["nope"]\n')
    res = CliRunner().invoke(app, ["run", "--plan", str(bad)])
    assert res.exit_code == 2 and "unknown condition 'nope'" in res.output


def test_the_preregistered_study_plan_validates(monkeypatch):
    """docs/results/plan.toml (run from the repository root) loads, every run valid, with the
    pre-registered rules."""
    from selfcorrect.rules_file import load_rules

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    plan = load_plan("docs/results/plan.toml")
    assert len(plan.specs) == 4 * 11 and {s.rules for s in plan.specs} == {
        Path("docs/results/rules.toml")
    }
    assert load_rules(plan.specs[0].rules)[0].readout == "cloze"


def test_a_plan_can_run_some_of_its_models_in_the_order_given(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text('models = ["ladder"]\n[[runs]]\nconditions = ["baseline"]\n'
                    '[[runs]]\nconditions = ["instruct"]\n')  # fmt: skip
    big, small = LADDER[-1], LADDER[0]
    plan = load_plan(path, only=f"{big},{small}")
    assert [s.models[0] for s in plan.specs] == [big, big, small, small]
    assert [s.conditions for s in plan.specs[:2]] == [("baseline",), ("instruct",)]
    with pytest.raises(SelfCorrectError, match="'x.gguf' is not one of the plan's models"):
        load_plan(path, only="x.gguf")
    res = CliRunner().invoke(app, ["run", "--plan", str(path), "--model", "x.gguf"])
    assert res.exit_code == 2 and "is not one of the plan's models" in res.output
    with pytest.raises(SelfCorrectError, match="--model has an empty or invalid name"):
        load_plan(path, only=",")


def test_the_command_line_overrides_an_option_the_plan_sets(tmp_path):
    path = tmp_path / "plan.toml"
    path.write_text('ray = "10.0.0.1:6379"\n[[runs]]\nconditions = ["baseline"]\n')
    assert load_plan(path).specs[0].ray == "10.0.0.1:6379"
    assert {s.ray for s in load_plan(path, ray="local").specs} == {"local"}
    path.write_text('[[runs]]\nconditions = ["baseline"]\nray = "10.0.0.1:6379"\n')
    assert {s.ray for s in load_plan(path, ray="local").specs} == {"local"}  # a run's too
