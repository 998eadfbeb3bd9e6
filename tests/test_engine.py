"""Engine plumbing with a fake backend: waves, multi-step protocols, resume, interruption."""

import re

import pytest

from selfcorrect.benchmarks.bbq import BBQ
from selfcorrect.conditions import load_library
from selfcorrect.engine import Job, count_pending, execute
from selfcorrect.store import Store
from tests.fakes import FakeBackend


@pytest.fixture(scope="module")
def items():
    b = BBQ()
    return b.sample(b.items(["Age", "Religion"]), 8, 0)


def make_plan(items, names, rounds=0):
    lib = load_library()
    return Job("bbq", lib.resolve(names, "bbq"), items, rounds, lib)


def setup_store(tmp_path, items):
    store = Store(tmp_path)
    return store, store.register_run({}, "bbq", BBQ().item_table(items), [], [])


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
    assert "avoids bias or stereotyping. fake says #" in last
    assert last.count("Assistant: The single, most likely answer choice is (c)") == 1
    assert last.count("Upon evaluation of my previous answer choice") == 2
    assert last.endswith("the single most likely answer choice is")
    # resume: nothing is generated or scored again
    again = FakeBackend()
    execute(store, run, "fake", again, plan)
    assert again.calls == {"score": 0, "generate": 0, "scored_prompts": []}


def test_generation_readout_parses_and_keeps_unparseable(tmp_path, items):
    from selfcorrect.benchmarks.bbq import parse_answer as parse_bbq

    store, run = setup_store(tmp_path, items[:3])
    lib = load_library()
    plan = Job(
        "bbq",
        lib.resolve(["baseline"], "bbq"),
        items[:3],
        1,
        lib,
        readout="generate",
        parser=parse_bbq,
    )
    execute(store, run, "fake", FakeBackend(answer=" (b) is right"), plan)
    plan_bad = Job(
        "bbq",
        lib.resolve(["instruct"], "bbq"),
        items[:3],
        0,
        lib,
        readout="generate",
        parser=parse_bbq,
    )
    execute(store, run, "fake", FakeBackend(answer=" no idea"), plan_bad)
    out = store.outcomes()
    good = out[out.condition == "baseline"]
    assert len(good) == 6 and (good["pred"] == 1).all() and (good["parse_status"] == "ok").all()
    bad = out[out.condition == "instruct"]
    assert bad["pred"].isna().all() and (bad["parse_status"] == "unparseable").all()
    tr = store.transcripts()
    r1 = tr[(tr.condition == "baseline") & (tr["round"] == 1)].iloc[0]["prompt"]
    assert "Assistant: The answer is (b) is right\n\nHuman: Review your previous answer." in r1


def test_critic_writes_feedback_each_round(tmp_path, items):
    store, run = setup_store(tmp_path, items[:2])
    lib = load_library()
    critic = FakeBackend(name="critic")
    plan = Job(
        "bbq",
        lib.resolve(["baseline"], "bbq"),
        items[:2],
        2,
        lib,
        critic=critic,
        critic_name="fake-critic",
    )
    execute(store, run, "fake", FakeBackend(), plan)
    assert critic.calls["generate"] == 4  # 2 items x 2 rounds
    out = store.outcomes()
    assert set(out["condition"]) == {"baseline+critic:fake-critic"} and len(out) == 6
    tr = store.transcripts()
    last = tr[tr["round"] == 2].iloc[0]["prompt"]
    assert last.count("Feedback from a reviewer: critic says #") == 2
    assert re.search(r"Feedback from a reviewer: critic says #\d\n\nReview your previous", last)
    again = FakeBackend(name="critic")
    execute(
        store,
        run,
        "fake",
        FakeBackend(),
        Job("bbq", plan.conditions, items[:2], 2, lib, critic=again, critic_name="fake-critic"),
    )
    assert again.calls["generate"] == 0


def test_sequential_backend_walks_items_depth_first(tmp_path, items):
    class Sequential(FakeBackend):
        batches = False

        def __init__(self):
            super().__init__()
            self.order = []

        def score(self, prompts, candidates):
            self.order += [p.count("Human: ") for p in prompts]
            return super().score(prompts, candidates)

    store, run = setup_store(tmp_path, items[:3])
    seq = Sequential()
    execute(store, run, "fake", seq, make_plan(items[:3], ["baseline"], rounds=2))
    # each item's rounds 0, 1, 2 come before the next item's
    assert seq.order == [1, 2, 3] * 3


def test_sampled_turns_get_seeds_of_their_own(tmp_path, items):
    """The seed of a sampled turn depends on the run seed and the turn, not on its batch."""
    from selfcorrect.backends.base import Sampling

    class Recorder(FakeBackend):
        seen: dict = {}

        def generate(self, prompts, max_tokens, sampling=None, keys=None):
            if keys is not None:
                for p, k in zip(prompts, keys, strict=True):
                    Recorder.seen.setdefault(p, set()).add(k)
            return super().generate(prompts, max_tokens, sampling, keys)

    lib = load_library()
    for batch in (1, 3):
        store, run = setup_store(tmp_path / str(batch), items[:4])
        job = Job("bbq", lib.resolve(["cot"], "bbq"), items[:4], 0, lib,
                  sampling=Sampling(1.0, 7))  # fmt: skip
        execute(store, run, "fake", Recorder(), job, batch_size=batch)
    assert len(Recorder.seen) == 4 and all(len(k) == 1 for k in Recorder.seen.values())


def test_a_streaming_backend_stores_rows_as_they_finish(tmp_path, items, monkeypatch):
    """Rows a streaming backend reports finished are stored while the rest still decode: an
    interrupt in the middle of one large batch keeps them, and the rerun generates the rest."""
    from selfcorrect import engine

    class Streams(FakeBackend):
        streams = True

        def generate(self, prompts, max_tokens, sampling=None, keys=None, on_done=None):
            texts = super().generate(prompts, max_tokens, sampling, keys)
            for i in reversed(range(len(prompts))):  # finishing order is not prompt order
                if i == 2:
                    raise KeyboardInterrupt
                on_done(i, texts[i])
            return texts

    monkeypatch.setattr(engine, "STREAM_FLUSH", 2)
    store, run = setup_store(tmp_path, items)
    job = make_plan(items, ["cot"])
    with pytest.raises(KeyboardInterrupt):
        execute(store, run, "fake", Streams(), job, batch_size=len(items))
    turns = store.done_turns("fake", "bbq", "cot", "logprob")
    finished = {items[i].uid for i in range(3, len(items))}  # rows 7..3 finished, 2 did not
    text = {uid: t for (uid, _), t in turns.items()}
    assert set(text) == finished and len(turns) == len(finished)
    assert all(text[items[i].uid].endswith(f"#{i}") for i in range(3, len(items)))
    fresh = FakeBackend()
    execute(store, run, "fake", fresh, job, batch_size=len(items))
    assert fresh.calls["generate"] == 3


def test_a_failed_streaming_write_leaves_its_rows_to_be_generated_again(tmp_path, items,
                                                                         monkeypatch):  # fmt: skip
    """A store write interrupted mid-stream stores none of its rows and advances none of their
    states: nothing is stored under a later step, and the rerun generates exactly those rows."""
    from selfcorrect import engine

    class Streams(FakeBackend):
        streams = True

        def generate(self, prompts, max_tokens, sampling=None, keys=None, on_done=None):
            texts = super().generate(prompts, max_tokens, sampling, keys)
            for i, text in enumerate(texts):
                on_done(i, text)
            return texts

    monkeypatch.setattr(engine, "STREAM_FLUSH", 2)
    store, run = setup_store(tmp_path, items)
    real, writes = store.write, []

    def flaky(run_id, answers=(), turns=()):
        turns = list(turns)
        writes.append(len(turns))
        if len(writes) == 2:
            raise KeyboardInterrupt
        return real(run_id, answers=answers, turns=turns)

    monkeypatch.setattr(store, "write", flaky)
    job = make_plan(items, ["cot"])
    with pytest.raises(KeyboardInterrupt):
        execute(store, run, "fake", Streams(), job, batch_size=len(items))
    monkeypatch.setattr(store, "write", real)
    turns = store.done_turns("fake", "bbq", "cot", "logprob")
    assert len(turns) == 2 and len({step for _, step in turns}) == 1
    fresh = FakeBackend()
    execute(store, run, "fake", fresh, job, batch_size=len(items))
    assert fresh.calls["generate"] == len(items) - 2
    after = store.done_turns("fake", "bbq", "cot", "logprob")
    assert len(after) == len(items) and {step for _, step in after} == {step for _, step in turns}


def test_interrupt_during_generation_keeps_finished_turns(tmp_path, items):
    class Dies(FakeBackend):
        def generate(self, prompts, max_tokens, sampling=None, keys=None):
            if self.calls["generate"] >= 4:
                raise KeyboardInterrupt
            return super().generate(prompts, max_tokens, sampling, keys)

    store, run = setup_store(tmp_path, items)
    lib = load_library()
    job = Job("bbq", lib.resolve(["cot"], "bbq"), items, 0, lib)
    with pytest.raises(KeyboardInterrupt):
        execute(store, run, "fake", Dies(), job, batch_size=2)
    assert len(store.done_turns("fake", "bbq", "cot", "logprob")) == 4
    fresh = FakeBackend()
    execute(store, run, "fake", fresh, job, batch_size=2)
    assert fresh.calls["generate"] == len(items) - 4
