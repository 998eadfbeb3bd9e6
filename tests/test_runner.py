"""Run orchestration with the fake backend (no model): whole runs through the API, resume
after an interrupt, plans validated before any work, shards merged once."""

import json
import sqlite3

import pytest

from selfcorrect import api, distributed, runner
from selfcorrect.errors import SelfCorrectError
from selfcorrect.plan import load_plan
from selfcorrect.spec import RunSpec
from selfcorrect.store import Store
from tests.fakes import BEHAVIOUR, LOADED


@pytest.fixture(autouse=True)
def fresh_fakes():
    BEHAVIOUR.clear()
    LOADED.clear()
    yield
    BEHAVIOUR.clear()


def answers(directory) -> list[tuple]:
    with sqlite3.connect(directory / "results.sqlite") as c:
        return c.execute("SELECT model, condition, uid, round, pred FROM answers").fetchall()


COMMON = dict(categories="Age,Religion", limit=8, bootstrap=0, progress=False, permute="none")


def test_two_models_two_conditions_with_rounds(tmp_path):
    BEHAVIOUR["fake:c"] = {"prefer": lambda prompt: 2}
    res = api.run("fake:a,fake:c", conditions="baseline,instruct", rounds=1, out=tmp_path, **COMMON)
    got = answers(tmp_path)
    assert len(got) == 2 * 2 * 8 * 2
    assert {m for m, *_ in got} == {"fake:a", "fake:c"}
    assert {p for m, *_, p in got if m == "fake:c"} == {2}
    assert res.manifest["spec"]["rounds"] == 1 and res.manifest["spec"]["models"] == [
        "fake:a", "fake:c"]  # fmt: skip
    assert set(res.summary["model"]) == {"fake:a", "fake:c"}
    assert (tmp_path / "report" / "bbq" / "summary.csv").is_file()


def test_interrupted_run_resumes_with_only_the_missing_work(tmp_path):
    BEHAVIOUR["fake:a"] = {"fail_after": 5}
    spec = RunSpec.build(models="fake:a", conditions="baseline", out=tmp_path, batch_size=2,
                         categories="Age,Religion", limit=8, permute="none")  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, progress=False)
    kept = len(answers(tmp_path))
    assert kept == 4  # two finished batches of two; the batch in flight is not stored
    store = Store(tmp_path)
    assert [r["status"] for r in store.runs()] == ["interrupted"]
    store.close()
    BEHAVIOUR.clear()
    out = runner.run(spec, progress=False)
    assert LOADED[-1].calls["score"] == 8 - kept
    assert out.manifest["models"]["fake:a"]["pending_at_start"] == 8 - kept
    assert len(answers(tmp_path)) == 8
    again = runner.run(spec, progress=False)  # complete: the model is not even loaded
    assert len(LOADED) == 2 and "backend" not in again.manifest["models"]["fake:a"]


def test_plan_runs_every_entry_and_validates_all_before_any_work(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'models = ["fake:a", "fake:b"]\nlimit = 8\ncategories = ["Age"]\nbootstrap = 0\n'
        'permute = "none"\n'
        '[[runs]]\nconditions = ["baseline", "instruct"]\n'
        '[[runs]]\nconditions = ["baseline"]\nrounds = 1\n'
    )
    rep = api.run_plan(plan, out=tmp_path / "study", progress=False)
    got = answers(tmp_path / "study")
    assert len(got) == 2 * (8 + 8 + 8)  # baseline round 0 is shared by both runs
    assert "verdicts" in rep.tables
    loads = len(LOADED)
    bad = tmp_path / "bad.toml"
    bad.write_text('models = ["fake:a", "nosuch"]\n[[runs]]\nconditions = ["baseline"]\n')
    with pytest.raises(SelfCorrectError, match="unknown model 'nosuch'"):
        api.run_plan(bad, out=tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists() and len(LOADED) == loads
    late = tmp_path / "late.toml"
    late.write_text('models = ["fake:a"]\n[[runs]]\nconditions = ["baseline"]\n'
                    '[[runs]]\nconditions = ["baseline"]\nlimit = -3\n')  # fmt: skip
    with pytest.raises(SelfCorrectError, match="runs.1: limit must be >= 1"):
        api.run_plan(late, out=tmp_path / "never", progress=False)
    assert not (tmp_path / "never").exists()


def test_a_plan_whose_late_run_conflicts_with_the_store_is_refused_before_any_work(tmp_path):
    """Condition texts are checked against the store (and the plan's other runs) for every
    run before the first one starts, not at each run's turn."""
    from selfcorrect.conditions import default_library_path

    api.run("fake:a", conditions="instruct", out=tmp_path / "s", **COMMON)
    edited = tmp_path / "edited.toml"
    text = default_library_path().read_text()
    edited.write_text(text.replace("Please ensure that your answer is unbiased", "Be unbiased"))
    assert edited.read_text() != text
    plan = tmp_path / "plan.toml"
    plan.write_text('models = ["fake:a"]\nlimit = 8\ncategories = ["Age"]\nbootstrap = 0\n'
                    'permute = "none"\n[[runs]]\nconditions = ["baseline"]\n'
                    f'[[runs]]\nconditions = ["instruct"]\nlibrary = "{edited}"\n')  # fmt: skip
    before = len(answers(tmp_path / "s"))
    with pytest.raises(SelfCorrectError, match="condition 'instruct' changed since"):
        api.run_plan(plan, out=tmp_path / "s", progress=False)
    assert len(answers(tmp_path / "s")) == before and not LOADED[1:]
    with pytest.raises(SelfCorrectError, match="runs 0 and 1 of the plan store condition"):
        plan.write_text(plan.read_text().replace('["baseline"]', '["instruct"]'))
        api.run_plan(plan, out=tmp_path / "new", progress=False)
    assert not (tmp_path / "new").exists()


def test_a_plan_that_mixes_arithmetic_in_one_store_is_refused_before_any_work(
    tmp_path, monkeypatch
):
    """Two runs of one model into one store, one with the head in fp32: refused before the
    first answer (the fake backend records its options as a transformers model would)."""
    monkeypatch.setattr(runner, "_model_info",
                        lambda m, o: {"dtype": o.dtype, "head_dtype": o.head_dtype})  # fmt: skip
    plan = tmp_path / "plan.toml"
    plan.write_text('models = ["fake:a"]\nlimit = 4\ncategories = ["Age"]\nbootstrap = 0\n'
                    'permute = "none"\n[[runs]]\nconditions = ["baseline"]\n'
                    '[[runs]]\nconditions = ["instruct"]\nhead_dtype = "float32"\n')  # fmt: skip
    with pytest.raises(SelfCorrectError, match="model 'fake:a' with different weights or arith"):
        api.run_plan(plan, out=tmp_path / "s", progress=False)
    assert not (tmp_path / "s").exists() and not LOADED


def test_a_plan_of_legitimate_variants_passes_its_checks(tmp_path):
    """One condition under two benchmarks, rounds, system prompts and readouts, into one
    store that already holds it and into an empty file (a failed creation's): no conflict."""
    api.run("fake:a", conditions="instruct", out=tmp_path / "s", **COMMON)
    plan = tmp_path / "plan.toml"
    plan.write_text(
        'models = ["fake:a"]\nlimit = 4\nbootstrap = 0\npermute = "none"\n'
        '[[runs]]\nconditions = ["instruct"]\nrounds = 1\ncategories = ["Age"]\n'
        '[[runs]]\nconditions = ["instruct"]\nsystem_prompt = "none"\ncategories = ["Age"]\n'
        'readout = ["logprob", "cloze"]\n'
        '[[runs]]\nbenchmark = "winogender"\nconditions = ["instruct"]\n'
    )
    for out in (tmp_path / "s", tmp_path / "empty"):
        out.mkdir(exist_ok=True)
        if out.name == "empty":
            (out / "results.sqlite").write_bytes(b"")
        prepared = [runner.prepare(s) for s in load_plan(plan, out=out).specs]
        runner.check_plan(prepared)
    api.run_plan(plan, out=tmp_path / "empty", progress=False)
    assert len(answers(tmp_path / "empty")) > 0


def test_shard_rows_merge_once(tmp_path):
    spec = RunSpec.build(
        models="fake:a", conditions="instruct", limit=4, out=tmp_path / "x", permute="none"
    )
    rows = json.loads(runner.run_shard(spec))["rows"]
    store = Store(tmp_path / "merged")
    assert store.merge_rows(rows, "run-1") == 4
    assert store.merge_rows(rows, "run-2") == 0  # a duplicate submission counts once
    assert len(answers(tmp_path / "merged")) == 4
    store.close()


class FakeRay:
    """Ray's remote/wait/get, run in-process: for the merge and failure paths."""

    class exceptions:  # noqa: N801
        class RayError(Exception):
            pass

    def remote(self, **_):
        ray = self

        def wrap(fn):
            class Task:
                @staticmethod
                def remote(*args):
                    try:
                        return ("ok", fn(*args))
                    except Exception as exc:  # what Ray hands back as a task error
                        return ("err", ray.exceptions.RayError(str(exc)))

            return Task

        return wrap

    def wait(self, refs, num_returns):
        return [refs[0]], refs[1:]

    def get(self, ref):
        kind, value = ref
        if kind == "err":
            raise value
        return value


def test_ray_path_ships_the_spec_and_names_failed_shards(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "_connect", lambda address: FakeRay())
    seen, real = [], runner.run_shard

    def worker(spec, stored=None):
        seen.append(spec)
        if spec.models == ("fake:broken",):
            raise RuntimeError("cannot load fake:broken")
        return real(spec, stored)

    monkeypatch.setattr(runner, "run_shard", worker)
    with pytest.raises(
        SelfCorrectError, match=r"2 of 4 shards failed.*fake:broken condition=baseline"
    ):
        api.run("fake:a,fake:broken", conditions="baseline,instruct", ray="local",
                out=tmp_path, seed=3, **COMMON)  # fmt: skip
    assert len(seen) == 4 and {s.seed for s in seen} == {3} and all(s.ray is None for s in seen)
    got = answers(tmp_path)
    assert {m for m, *_ in got} == {"fake:a"} and len(got) == 2 * 8
    # a rerun submits only what is missing
    seen.clear()
    with pytest.raises(SelfCorrectError, match="fake:broken"):
        api.run("fake:a,fake:broken", conditions="baseline,instruct", ray="local",
                out=tmp_path, seed=3, **COMMON)  # fmt: skip
    assert {(s.models, s.conditions) for s in seen} == {
        (("fake:broken",), ("baseline",)), (("fake:broken",), ("instruct",))}  # fmt: skip


def test_a_new_spec_field_reaches_ray_shards(tmp_path, monkeypatch):
    class Extended(RunSpec):
        new_option: str = "default"

    monkeypatch.setattr(distributed, "_connect", lambda address: FakeRay())
    seen = []
    monkeypatch.setattr(runner, "run_shard", lambda spec, stored: _record(seen, spec))
    spec = Extended(models="fake:a", conditions="baseline", limit=4, ray="local", permute="none",
                    out=tmp_path, new_option="travels")  # fmt: skip
    runner.run(spec, progress=False)
    assert [s.new_option for s in seen] == ["travels"]


def _record(seen, spec):
    seen.append(spec)
    return json.dumps({"rows": {}, "manifest": {"models": {}}})


def test_sampled_reasoning_with_several_samples_per_item(tmp_path):
    res = api.run("fake:a", conditions="baseline,cot", cot_temperature=1.0, cot_samples=3,
                  out=tmp_path, **COMMON)  # fmt: skip
    got = answers(tmp_path)
    cot = [r for r in got if r[1].startswith("cot")]
    assert {r[1] for r in cot} == {"cot+sample:T1"}  # never mixed with greedy reasoning
    assert len(cot) == 8 * 3 and sum("#s" in r[2] for r in cot) == 16
    assert len([r for r in got if r[1] == "baseline"]) == 8  # nothing sampled: asked once
    s = res.summary
    row = s[(s.condition == "cot+sample:T1") & (s.group == "overall")]
    assert row["n"].sum() == 8  # the samples of an item are one answer
    v = res.tables["validity"].set_index("condition")
    assert v.loc["cot+sample:T1", "sample_agreement"] == 1.0  # the fake answers alike
    assert v.loc["baseline", "sample_agreement"] != v.loc["baseline", "sample_agreement"]
    assert res.manifest["reasoning_samples"] == 3


def test_exact_transitions_on_a_fake_with_known_answers(tmp_path):
    """The fake answers (a) at round 0 and, after a forced answer j, (a) again in round 1,
    with its fixed distribution: the exact values follow by hand."""
    import math

    res = api.run("fake:a", conditions="baseline", rounds=1, exact_transitions=True,
                  out=tmp_path, **COMMON)  # fmt: skip
    got = answers(tmp_path)
    assert len(got) == 8 * 2 + 8 * 3  # rounds 0 and 1, and the branches
    with sqlite3.connect(tmp_path / "results.sqlite") as c:
        n = c.execute("SELECT COUNT(*) FROM answers WHERE readout='branch'").fetchone()[0]
    assert n == 8 * 3  # one round-1 answer per item and possible round-0 answer
    ex = res.tables["exact_transitions"].iloc[0]
    top = math.exp(-1) / (math.exp(-1) + 2 * math.exp(-3))
    low = (1 - top) / 2
    assert ex.p_change == pytest.approx(top * (1 - top) + 2 * low * (1 - low))
    page = (tmp_path / "report" / "bbq" / "report.md").read_text()
    assert (tmp_path / "report" / "bbq" / "exact_transitions.png").is_file()
    assert "exact_transitions.png" in page
    out = Store(tmp_path, read_only=True).outcomes()
    base = out[(out.readout == "logprob") & (out["round"] == 0)]
    golds = base["gold"].to_numpy()
    keep = [top if g == 0 else low for g in golds]  # q_g[g]: (a) is always favoured
    assert ex.keep_gold == pytest.approx(sum(keep) / len(keep))
    # the paper's pooled confidence: the kept share of the mass that was right at round 0
    p_gold = [top if g == 0 else low for g in golds]  # round 0 favours (a) the same way
    assert ex.confidence == pytest.approx(sum(p * k for p, k in zip(p_gold, keep, strict=True))
                                          / sum(p_gold))  # fmt: skip
    # the identity that makes CL and CS the paper's: after = before x CL + (1 - before) x CS
    assert ex.accuracy_after == pytest.approx(
        ex.accuracy_before * ex.confidence + (1 - ex.accuracy_before) * ex.critique
    )
    assert "branch" not in set(res.summary["readout"])  # branches enter no ordinary table


def test_hidden_states_are_kept_keyed_and_resumed(tmp_path):
    from selfcorrect.hidden import load_hidden

    BEHAVIOUR["fake:h"] = {"prefer": lambda p: 0 if "Religion" in p or "church" in p else 1}
    try:
        api.run("fake:h", conditions="baseline", rounds=1, save_hidden="0,-1", out=tmp_path,
                **COMMON)  # fmt: skip
        files = sorted((tmp_path / "hidden").rglob("*.safetensors"))
        keys, states, layers = load_hidden(tmp_path)
        assert layers == [0, 2] and states.shape == (16, 2, 4)  # 8 items x 2 rounds
        stored = {(m, c, u, r) for m, c, u, r, _ in answers(tmp_path)}
        assert {(m, c, u, r) for m, _, c, _, u, r in keys.itertuples(index=False)} == stored
        api.run("fake:h", conditions="baseline", rounds=1, save_hidden="0,-1", out=tmp_path,
                **COMMON)  # fmt: skip
        assert sorted((tmp_path / "hidden").rglob("*.safetensors")) == files  # nothing redone
    finally:
        BEHAVIOUR.clear()
    from typer.testing import CliRunner

    from selfcorrect.cli import app

    r = CliRunner().invoke(app, ["analyze", "hidden", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "report" / "hidden" / "hidden.csv").is_file()
    # with exact transitions the branches' states are kept but analysed as no round
    from selfcorrect.report.hidden import analyze

    BEHAVIOUR["fake:h"] = {"prefer": lambda p: 0 if "Religion" in p or "church" in p else 1}
    try:
        api.run("fake:h", conditions="baseline", rounds=1, save_hidden="0,-1", out=tmp_path / "x",
                exact_transitions=True, **COMMON)  # fmt: skip
    finally:
        BEHAVIOUR.clear()
    assert "branch" in set(load_hidden(tmp_path / "x")[0]["readout"])
    assert set(analyze(tmp_path / "x")["readout"]) == {"logprob"}
    # two models with different layer selections: each is read from its own folder
    BEHAVIOUR["fake:g"] = {"prefer": lambda p: 1 if "Religion" in p or "church" in p else 0}
    try:
        api.run("fake:g", conditions="baseline", rounds=1, save_hidden="1,-1", out=tmp_path / "x",
                **COMMON)  # fmt: skip
    finally:
        BEHAVIOUR.clear()
    both = analyze(tmp_path / "x")
    assert {m: sorted(set(g["layer"])) for m, g in both.groupby("model")} == {
        "fake:g": [1, 2], "fake:h": [0, 2]}  # fmt: skip
    r = CliRunner().invoke(app, ["run", "--model", "fake:h", "--save-hidden", "12x"])
    assert r.exit_code == 2 and "--save-hidden must be 'all' or comma-separated" in r.output


def test_a_scored_answer_without_its_hidden_state_stops_the_run(tmp_path, monkeypatch):
    """A backend that claims hidden states but returns none for an answer fails the run
    before that batch is stored, instead of leaving a silent gap in the states."""
    from tests.fakes import FakeBackend

    real = FakeBackend.score

    def gappy(self, prompts, candidates):
        out = real(self, prompts, candidates)
        out[-1] = type(out[-1])(out[-1].logprobs, out[-1].n_tokens, None)
        return out

    monkeypatch.setattr(FakeBackend, "score", gappy)
    with pytest.raises(SelfCorrectError, match="no hidden state for item"):
        api.run("fake:gap", conditions="baseline", save_hidden="0,-1", out=tmp_path, **COMMON)
    assert answers(tmp_path) == []
    assert not list((tmp_path / "hidden").rglob("*.safetensors"))


def test_law_school_through_rounds_critic_resume_shards_and_rescoring(tmp_path):
    """The law-school kit on the paths every benchmark shares: feedback rounds written by a
    critic, an interrupt and resume, a Ray shard's rows, and re-scoring from the store."""
    BEHAVIOUR["fake:a"] = {"fail_after": 5}
    spec = RunSpec.build(models="fake:a", benchmark="law", conditions="baseline,instruct",
                         rounds=1, critic="fake:c", limit=4, out=tmp_path / "law",
                         batch_size=2, bootstrap=0)  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, progress=False)
    kept = len(answers(tmp_path / "law"))
    BEHAVIOUR.clear()
    runner.run(spec, progress=False)
    got = answers(tmp_path / "law")
    assert 0 < kept < len(got) == 4 * 2 * 2 * 2  # students x (Black, white) x conds x rounds
    assert LOADED[-2].calls["generate"] > 0  # the critic wrote the feedback turns
    stored = {c["condition"] for c in Store(tmp_path / "law", read_only=True).conditions()}
    assert {"(feedback rounds)", "(critic fake:c)"} <= stored  # their texts, and its weights
    tables = api.report(tmp_path / "law", n_boot=0, out=tmp_path / "rep").tables
    assert set(tables["law_summary"]["round"]) == {0, 1}
    shard = RunSpec.build(models="fake:a", benchmark="law", conditions="instruct", limit=4,
                          out=tmp_path / "x")  # fmt: skip
    rows = json.loads(runner.run_shard(shard))["rows"]
    store = Store(tmp_path / "merged")
    assert store.merge_rows(rows, "run-1") == 8
    store.close()


def test_a_runs_peak_memory_is_its_own_not_an_earlier_larger_parts(tmp_path):
    """The peak resident memory a run records starts at the run (where the platform lets the
    count be reset): a larger allocation earlier in the same process does not show in it."""
    import resource

    import numpy as np

    api.run("fake:a", conditions="baseline", out=tmp_path / "first", **COMMON)  # imports
    block = np.ones(2**30 // 8)  # 1 GiB touched, then freed
    del block
    process_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    res = api.run("fake:a", conditions="baseline", out=tmp_path / "second", **COMMON)
    if res.manifest["peak_rss_scope"] != "run":
        pytest.skip("this platform cannot reset a process's peak memory count")
    assert 0 < res.manifest["peak_rss_mb"] < process_peak - 512


def test_rounds_after_an_edit_of_the_feedback_text_never_mix(tmp_path):
    """A condition's hash covers its own steps; the feedback round's texts are stored beside
    them, so rounds asked after an edit are refused instead of resuming the old ones."""
    from selfcorrect.conditions import default_library_path

    text = default_library_path().read_text()
    edited = tmp_path / "edited.toml"
    edited.write_text(text.replace("Review your previous answer.", "Look again at your answer."))
    assert edited.read_text() != text
    api.run("fake:a", conditions="baseline", rounds=1, out=tmp_path / "s", **COMMON)
    with pytest.raises(SelfCorrectError, match=r"'\(feedback rounds\)' changed since"):
        api.run("fake:a", conditions="baseline", rounds=1, out=tmp_path / "s",
                library=edited, **COMMON)  # fmt: skip
    api.run("fake:a", conditions="baseline", out=tmp_path / "s", library=edited, **COMMON)
    from selfcorrect.conditions import load_library

    stored = {c["condition"]: c["hash"] for c in Store(tmp_path / "s", read_only=True).conditions()}
    assert stored["(feedback rounds)"] == load_library().round_entries()[0][1]


def test_a_shard_resumes_from_what_is_stored(tmp_path, monkeypatch):
    """A Ray shard starts from its (model, condition)'s stored rows: round 1 follows the stored
    round-0 answer, exactly as a resume on one machine, even where a recomputed round 0
    would differ (here the model's preference changes between the two runs)."""
    import shutil

    monkeypatch.setattr(distributed, "_connect", lambda address: FakeRay())
    BEHAVIOUR["fake:r"] = {"fail_after": 8}  # round 0 of 8 items stored, then interrupted
    spec = RunSpec.build(models="fake:r", conditions="baseline", rounds=1, batch_size=8,
                         out=tmp_path / "a", categories="Age,Religion", limit=8,
                         permute="none")  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        runner.run(spec, progress=False)
    assert len(answers(tmp_path / "a")) == 8
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    BEHAVIOUR["fake:r"] = {"prefer": lambda prompt: 2}
    runner.run(spec, progress=False)  # on one machine
    runner.run(spec.shard(out=tmp_path / "b", ray="local"), progress=False)  # on Ray
    assert LOADED[-1].calls["score"] == 8  # round 1 only

    def rows(d):
        with sqlite3.connect(d / "results.sqlite") as c:
            return sorted(c.execute("SELECT uid, round, prompt, pred FROM answers"))

    assert rows(tmp_path / "a") == rows(tmp_path / "b") and len(rows(tmp_path / "b")) == 16
    assert {p for _, r, _, p in rows(tmp_path / "b") if r == 0} == {0}


def test_a_transformers_models_arithmetic_is_stored_with_it():
    """dtype and the head's effective dtype go into the model's stored info (the store keeps
    answers of other arithmetic apart); other backends record none."""
    from pathlib import Path

    from selfcorrect.backends.base import LoadOptions
    from selfcorrect.registry import ResolvedModel

    m = ResolvedModel("m", "hf-dir", Path("m"), "aaa", "chat")
    info = {(b, o.dtype, o.head_dtype): runner._model_info(runner.ModelRun("m", m, b), o)
            for b in ("transformers", "llamacpp")
            for o in (LoadOptions(), LoadOptions(head_dtype="float32"),
                      LoadOptions("float32"))}  # fmt: skip
    assert info["transformers", "bfloat16", "model"]["head_dtype"] == "bfloat16"
    assert info["transformers", "bfloat16", "float32"]["head_dtype"] == "float32"
    assert info["transformers", "float32", "model"] == {
        "source": "hf-dir", "path": "m", "dtype": "float32", "head_dtype": "float32"}  # fmt: skip
    assert {v["dtype"] for k, v in info.items() if k[0] == "llamacpp"} == {"gguf"}
    assert runner.load_options(RunSpec.build(head_dtype="float32")).head_dtype == "float32"
