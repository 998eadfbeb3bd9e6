"""Runs a plan: models x conditions x items (x feedback rounds), in waves.

Each (item, condition) pair walks its protocol. Asks and prefills are local; generations and
reads are gathered across all pairs and sent to the backend together (a wave), then written to
the store in one transaction per batch. On restart every stored turn and answer is replayed
from the store, so only what is missing is computed."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from selfcorrect.backends.base import Backend, Conversation
from selfcorrect.benchmarks.base import Item
from selfcorrect.conditions import Condition, Library, Step, protocol
from selfcorrect.store import Answer, Store

READOUT = "logprob"


@dataclass
class _State:
    """One item under one condition, part-way through its protocol."""

    item: Item
    condition: Condition
    steps: list[Step]
    pos: int = 0
    messages: list[tuple[str, str]] = field(default_factory=list)
    prefill: str = ""
    reads: int = 0  # how many answers have been read so far (= the round of the next read)

    def conversation(self) -> Conversation:
        return Conversation(tuple(self.messages), self.prefill)

    def finish_assistant(self, text: str) -> None:
        self.messages.append(("assistant", self.prefill + text))
        self.prefill = ""


def softmax(logprobs: Sequence[float]) -> list[float]:
    top = max(logprobs)
    exps = [math.exp(x - top) for x in logprobs]
    total = sum(exps)
    return [e / total for e in exps]


@dataclass
class Plan:
    benchmark: str
    conditions: list[Condition]
    items: list[Item]
    rounds: int
    library: Library
    family: str = ""  # the library section; defaults to the benchmark's name

    def __post_init__(self):
        self.family = self.family or self.benchmark


def count_pending(store: Store, model: str, plan: Plan) -> int:
    """How many answers are still missing for this model (without loading it)."""
    missing = 0
    for cond in plan.conditions:
        done = store.done_answers(model, plan.benchmark, cond.name, READOUT)
        for item in plan.items:
            missing += sum((item.uid, r) not in done for r in range(plan.rounds + 1))
    return missing


def execute(
    store: Store,
    run_id: str,
    model: str,
    backend: Backend,
    plan: Plan,
    batch_size: int = 64,
    on_progress: Callable[[int], None] = lambda n: None,
) -> dict:
    """Run every missing step for one model; return timings per condition."""
    timings: dict[str, float] = {}
    for cond in plan.conditions:
        t0 = time.perf_counter()
        digest = cond.version_hash(plan.family)
        done_ans = store.done_answers(model, plan.benchmark, cond.name, READOUT)
        done_turns = store.done_turns(model, plan.benchmark, cond.name, READOUT)
        states = [
            _State(it, cond, protocol(cond, plan.family, it.fields, plan.rounds, plan.library))
            for it in plan.items
        ]
        active = states
        while active:
            waiting_gen: list[_State] = []
            waiting_read: list[_State] = []
            for st in active:
                _advance(st, done_ans, done_turns)
                if st.pos < len(st.steps):
                    kind = st.steps[st.pos].kind
                    (waiting_gen if kind == "generate" else waiting_read).append(st)
            if waiting_gen:
                _generate_wave(store, run_id, model, backend, plan, waiting_gen, batch_size)
            if waiting_read:
                _read_wave(
                    store,
                    run_id,
                    model,
                    backend,
                    plan,
                    digest,
                    waiting_read,
                    batch_size,
                    on_progress,
                )
            active = waiting_gen + waiting_read
        timings[cond.name] = round(time.perf_counter() - t0, 3)
    return timings


def _advance(st: _State, done_ans: dict, done_turns: dict) -> None:
    """Apply local steps and replay stored ones until a step needs the model."""
    while st.pos < len(st.steps):
        step = st.steps[st.pos]
        if step.kind == "ask":
            st.messages.append(("user", step.text))
        elif step.kind == "prefill":
            st.prefill = step.text
        elif step.kind == "generate":
            stored = done_turns.get((st.item.uid, st.pos))
            if stored is None:
                return
            st.finish_assistant(stored)
        elif step.kind == "read":
            key = (st.item.uid, st.reads)
            if key not in done_ans:
                return
            _after_read(st, done_ans[key])
        st.pos += 1


def _after_read(st: _State, pred: int | None) -> None:
    # The answer becomes the assistant's turn, so later rounds see the whole conversation.
    st.finish_assistant(st.item.candidates[pred] if pred is not None else "")
    st.reads += 1


def _generate_wave(store, run_id, model, backend, plan, states, batch_size) -> None:
    for k in range(0, len(states), batch_size):
        chunk = states[k : k + batch_size]
        by_len: dict[int, list[_State]] = {}
        for st in chunk:
            by_len.setdefault(st.steps[st.pos].max_tokens, []).append(st)
        turns = []
        for max_tokens, group in by_len.items():
            prompts = [backend.render(st.conversation()) for st in group]
            texts = backend.generate(prompts, max_tokens)
            for st, prompt, text in zip(group, prompts, texts, strict=True):
                turns.append(
                    (
                        model,
                        plan.benchmark,
                        st.condition.name,
                        READOUT,
                        st.item.uid,
                        st.pos,
                        prompt,
                        text,
                    )
                )
                st.finish_assistant(text)
                st.pos += 1
        store.write(run_id, turns=turns)


def _read_wave(store, run_id, model, backend, plan, digest, states, batch_size, on_progress):
    for k in range(0, len(states), batch_size):
        chunk = states[k : k + batch_size]
        prompts = [backend.render(st.conversation()) for st in chunk]
        results = backend.score(prompts, [st.item.candidates for st in chunk])
        answers = []
        for st, prompt, res in zip(chunk, prompts, results, strict=True):
            probs = softmax(res.logprobs)
            pred = max(range(len(probs)), key=probs.__getitem__)
            answers.append(
                Answer(
                    model=model,
                    benchmark=plan.benchmark,
                    condition=st.condition.name,
                    condition_hash=digest,
                    readout=READOUT,
                    uid=st.item.uid,
                    round=st.reads,
                    prompt=prompt,
                    candidates=st.item.candidates,
                    logprobs=res.logprobs,
                    probs=probs,
                    pred=pred,
                    parse_status="ok",
                )
            )
            _after_read(st, pred)
            st.pos += 1
        store.write(run_id, answers=answers)
        on_progress(len(chunk))
