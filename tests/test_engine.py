"""Engine plumbing with a fake backend: waves, multi-step protocols, resume, interruption."""

import pytest

from selfcorrect.benchmarks.bbq import BBQ
from selfcorrect.conditions import load_library
from selfcorrect.engine import Plan, count_pending, execute
from selfcorrect.store import Store
from tests.fakes import FakeBackend


@pytest.fixture(scope="module")
def items():
    b = BBQ()
    return b.sample(b.items(["Age", "Religion"]), 8, 0)


def make_plan(items, names, rounds=0):
    lib = load_library()
    return Plan("bbq", lib.resolve(names, "bbq"), items, rounds, lib)


def setup_store(tmp_path, items):
    store = Store(tmp_path)
    store.add_items("bbq", BBQ().item_table(items))
    return store, store.start_run({})


def test_single_turn_stores_every_answer(tmp_path, items):
    store, run = setup_store(tmp_path, items)
    plan = make_plan(items, ["baseline", "instruct"])
    fake = FakeBackend()
    execute(store, run, "fake", fake, plan)
    out = store.outcomes()
    assert len(out) == 16 and set(out["condition"]) == {"baseline", "instruct"}
    assert (out["pred"] == 0).all()
    assert fake.calls["score"] == 16
    prompt = fake.calls["scored_prompts"][0]
    assert prompt.startswith("Human: ") and prompt.endswith("\n\nAssistant: The answer is")


def test_resume_computes_only_missing(tmp_path, items):
    store, run = setup_store(tmp_path, items)
    plan = make_plan(items, ["baseline"])
    with pytest.raises(KeyboardInterrupt):
        execute(store, run, "fake", FakeBackend(fail_after=3), plan, batch_size=2)
    assert len(store.outcomes()) == 2  # the finished batch survived; the one in flight did not
    assert count_pending(store, "fake", plan) == 6
    fresh = FakeBackend()
    execute(store, run, "fake", fresh, plan, batch_size=2)
    assert fresh.calls["score"] == 6
    assert count_pending(store, "fake", plan) == 0


def test_cot_and_rounds_grow_the_conversation(tmp_path, items):
    store, run = setup_store(tmp_path, items[:2])
    plan = make_plan(items[:2], ["cot"], rounds=2)
    fake = FakeBackend(prefer=lambda p: 2)
    execute(store, run, "fake", fake, plan)
    assert fake.calls["generate"] == 2
    out = store.outcomes().sort_values(["uid", "round"])
    assert list(out["round"]) == [0, 1, 2, 0, 1, 2]
    tr = store.transcripts()
    last = tr[(tr["uid"] == items[0].uid) & (tr["round"] == 2)].iloc[0]["prompt"]
    # The round-2 prompt carries the whole conversation: question, reasoning, answers, reviews.
    assert last.count("Human: ") == 4
    assert "avoids bias or stereotyping. reasoning #" in last
    assert last.count("Assistant: The single, most likely answer choice is (c)") == 1
    assert last.count("Upon evaluation of my previous answer choice") == 2
    assert last.endswith("the single most likely answer choice is")
    # resume: nothing is generated or scored again
    again = FakeBackend()
    execute(store, run, "fake", again, plan)
    assert again.calls == {"score": 0, "generate": 0, "scored_prompts": []}
