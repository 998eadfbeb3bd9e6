"""Runs a job for one model: conditions x items (x feedback rounds) under one readout, in waves.

Each (item, condition) pair walks its protocol. Asks and prefills are local; generations,
critiques and reads are gathered across all pairs and sent to the backend together (a wave),
then written to the store in one transaction per batch. On restart every stored turn and answer
is replayed from the store, so only what is missing is computed: resume works at the
granularity of (item, condition, round)."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from selfcorrect.backends.base import Backend, Conversation, PromptTooLong, Sampling
from selfcorrect.benchmarks.base import Item
from selfcorrect.conditions import Condition, Library, Step, fill, protocol
from selfcorrect.errors import SelfCorrectError
from selfcorrect.hidden import HiddenWriter
from selfcorrect.store import Answer, Store

READOUTS = ("logprob", "cloze", "generate")
BRANCH = "branch"  # exact transitions: round 1 after each possible round-0 answer (not a --readout)
ANSWER_TOKENS = 8  # methodology.md section 4: up to 8 new tokens for answers


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
    critique: str = ""  # the critic's feedback, prepended to the next user turn

    def conversation(self, system: str = "default") -> Conversation:
        return Conversation(tuple(self.messages), self.prefill, system)

    def finish_assistant(self, text: str) -> None:
        self.messages.append(("assistant", self.prefill + text))
        self.prefill = ""


def softmax(logprobs: Sequence[float]) -> list[float]:
    top = max(logprobs)
    exps = [math.exp(x - top) for x in logprobs]
    total = sum(exps)
    return [e / total for e in exps]


@dataclass
class Job:
    """One benchmark's items under conditions, rounds and one readout: what the engine runs
    for one model at a time."""

    benchmark: str
    conditions: list[Condition]
    items: list[Item]
    rounds: int
    library: Library
    family: str = ""  # the library section; defaults to the benchmark's name
    readout: str = "logprob"
    parser: Callable | None = None  # (item, text) -> (pred or None, status), for "generate"
    sampling: Sampling | None = None  # for reasoning steps only; None = greedy
    critic: Backend | None = None  # extrinsic feedback: a second model writes each round's
    critic_name: str = ""
    system: str = "default"  # the system prompt (see Conversation)

    def __post_init__(self):
        self.family = self.family or self.benchmark

    def stored_rounds(self) -> range:
        """The rounds whose answers are stored (a branch forces its round-0 answer)."""
        return range(1, 2) if self.readout == BRANCH else range(self.rounds + 1)

    def steps_for(self, cond: Condition, item: Item) -> list[Step]:
        return protocol(
            cond,
            self.family,
            item.fields,
            self.rounds,
            self.library,
            critic=self.critic is not None,
        )

    def condition_key(self, cond: Condition) -> str:
        """Results with a critic, another system prompt, or sampled reasoning are another
        condition: they never mix with those of the template's default, intrinsic, greedy
        self-correction."""
        sampled = self.sampling if cond.is_multi_turn(self.family) else None
        return condition_key(cond.name, self.critic_name if self.critic is not None else "",
                             self.system, sampled)  # fmt: skip

    def items_for(self, cond: Condition) -> list[Item]:
        """The items a condition is asked: every sample of an item only where the condition
        samples something (its reasoning); elsewhere the samples would repeat one answer."""
        if cond.is_multi_turn(self.family):
            return self.items
        return [it for it in self.items if not it.meta.get("sample")]


def sample_key(seed: int, uid: str, condition: str, step: int) -> int:
    """The seed of one sampled turn: a function of the run seed and the turn's identity only,
    so the same seed gives the same draws whatever the batch, order, resume point or shard (and
    the same text where the logits are the same: in bf16 across batches they need not be)."""
    digest = hashlib.sha256(f"{seed}|{uid}|{condition}|{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def system_tag(system: str) -> str:
    if system in ("default", "none"):
        return system
    return "sha256-" + hashlib.sha256(system.encode()).hexdigest()[:10]


SYSTEM_SUFFIX = "+system:"  # a condition key asked under a non-default system prompt ends so
SAMPLE_SUFFIX = "+sample:"  # and one whose reasoning was sampled carries this


def condition_key(name: str, critic: str = "", system: str = "default",
                  sampling: Sampling | None = None) -> str:  # fmt: skip
    key = f"{name}+critic:{critic}" if critic else name
    if sampling is not None:
        top_p = "" if sampling.top_p == 1.0 else f",p{sampling.top_p:g}"
        key += f"{SAMPLE_SUFFIX}T{sampling.temperature:g}{top_p}"
    return key if system == "default" else f"{key}{SYSTEM_SUFFIX}{system_tag(system)}"


def sampled_protocol(key: str) -> str | None:
    """The condition a sampled, default-system key was asked under ('cot' for
    'cot+sample:T1'); None for any other key."""
    base, sep, _ = str(key).partition(SAMPLE_SUFFIX)
    return base if sep and system_of(key) == "default" else None


def system_of(key: str) -> str:
    """The system-prompt tag a condition key was asked under ("default" when it has none)."""
    _, sep, tag = str(key).rpartition(SYSTEM_SUFFIX)
    return tag if sep else "default"


def count_pending(store: Store, model: str, job: Job) -> int:
    """How many answers are still missing for this model (without loading it)."""
    missing = 0
    for cond in job.conditions:
        done = store.done_answers(model, job.benchmark, job.condition_key(cond), job.readout)
        for item in job.items_for(cond):
            missing += sum((item.uid, r) not in done for r in job.stored_rounds())
    return missing


def execute(
    store: Store,
    run_id: str,
    model: str,
    backend: Backend,
    job: Job,
    batch_size: int = 64,
    on_progress: Callable[[int], None] = lambda n: None,
    hidden: HiddenWriter | None = None,
) -> dict:
    """Run every missing step for one model; return seconds spent per condition. With
    `hidden`, the backend's captured states at every scored answer are written beside it."""
    runs = []
    for cond in job.conditions:
        key = job.condition_key(cond)
        ctx = _Context(
            store,
            run_id,
            model,
            backend,
            job,
            key,
            cond.version_hash(job.family),
            batch_size,
            on_progress,
            hidden,
        )
        runs.append(
            (
                ctx,
                store.done_answers(model, job.benchmark, key, job.readout),
                store.done_turns(model, job.benchmark, key, job.readout),
                _states(job, cond),
            )
        )
    # A batching backend takes a batch of items through all their steps and rounds, under
    # every condition, before the next batch; a sequential one (llama.cpp) one item. Either way
    # the backend's prompt cache still holds the conversation so far, and the same question
    # under the previous condition, instead of recomputing them.
    width = batch_size if backend.batches else 1
    width = min(width, backend.preferred_batch or width)  # e.g. an API: less to redo
    timings = {ctx.condition: 0.0 for ctx, *_ in runs}
    for k in range(0, len(job.items), width):
        for ctx, done_ans, done_turns, states in runs:
            t0 = time.perf_counter()
            chunk = [st for st in states[k : k + width] if st is not None]
            _run_waves(ctx, chunk, done_ans, done_turns)
            timings[ctx.condition] += time.perf_counter() - t0
    return {key: round(sec, 3) for key, sec in timings.items()}


def _states(job: Job, cond: Condition) -> list[_State | None]:
    """One state per item the condition is asked, aligned with job.items (None where the
    condition skips an item), so every condition walks the same items batch by batch."""
    asked = {it.uid for it in job.items_for(cond)}
    return [_State(it, cond, job.steps_for(cond, it)) if it.uid in asked else None
            for it in job.items]  # fmt: skip


def _run_waves(ctx: _Context, active: list[_State], done_ans: dict, done_turns: dict) -> None:
    """Step k of every state together, until all protocols are done."""
    while active:
        waiting: dict[str, list[_State]] = {"generate": [], "critique": [], "read": []}
        for st in active:
            _advance(st, done_ans, done_turns, ctx.job.library, ctx.job.readout)
            if st.pos < len(st.steps):
                waiting[st.steps[st.pos].kind].append(st)
        if waiting["generate"]:
            _generate_wave(ctx, waiting["generate"])
        if waiting["critique"]:
            _critique_wave(ctx, waiting["critique"])
        if waiting["read"]:
            _read_wave(ctx, waiting["read"])
        active = [st for group in waiting.values() for st in group]


@dataclass
class _Context:
    store: Store
    run_id: str
    model: str
    backend: Backend
    job: Job
    condition: str
    digest: str
    batch_size: int
    on_progress: Callable[[int], None]
    hidden: HiddenWriter | None = None

    def turn(self, st: _State, prompt: str, text: str) -> tuple:
        return (
            self.model,
            self.job.benchmark,
            self.condition,
            self.job.readout,
            st.item.uid,
            st.pos,
            prompt,
            text,
        )

    def chunks(self, states: list[_State]):
        for k in range(0, len(states), self.batch_size):
            yield states[k : k + self.batch_size]


def _advance(st: _State, done_ans: dict, done_turns: dict, lib: Library, readout: str) -> None:
    """Apply local steps and replay stored ones until a step needs a model."""
    while st.pos < len(st.steps):
        step = st.steps[st.pos]
        if step.kind == "ask":
            text = step.text
            if st.critique:
                text = fill(lib.critic.feedback, {"critique": st.critique.strip()}) + text
                st.critique = ""
            st.messages.append(("user", text))
        elif step.kind == "prefill":
            st.prefill = step.text
        elif step.kind in ("generate", "critique"):
            stored = done_turns.get((st.item.uid, st.pos))
            if stored is None:
                return
            _after_turn(st, step.kind, stored)
        elif step.kind == "read" and readout == BRANCH and st.reads == 0:
            _after_read(st, st.item.meta["branch"], None, readout)  # the answer it branches on
        elif step.kind == "read":
            key = (st.item.uid, st.reads)
            if key not in done_ans:
                return
            _after_read(st, *done_ans[key], readout)
        st.pos += 1


def _after_turn(st: _State, kind: str, text: str) -> None:
    if kind == "generate":
        st.finish_assistant(text)
    else:
        st.critique = text


def _after_read(st: _State, pred: int | None, raw: str | None, readout: str) -> None:
    # The answer becomes the assistant's turn, so later rounds see the whole conversation:
    # the model's own words (generation readout) or the option it put most mass on (logprob).
    if raw is not None:
        st.finish_assistant(raw)
    else:
        said = st.item.continuations(readout)
        st.finish_assistant(said[pred] if pred is not None else "")
    st.reads += 1


def _call(ctx: _Context, states: list[_State], fn, *args, **kwargs):
    """A backend call; a prompt over the model's context is an error naming its item."""
    try:
        return fn(*args, **kwargs)
    except PromptTooLong as exc:
        st = states[exc.index]
        raise SelfCorrectError(
            f"item {st.item.uid} (condition {ctx.condition}, round {st.reads}): {exc}; nothing "
            "was stored for it: use fewer --rounds or a shorter chain of thought"
        ) from None


def _write_hidden(ctx: _Context, chunk: list[_State], scored) -> None:
    """The states captured at these answers, written before their store transaction."""
    if ctx.hidden is None or not chunk:
        return
    missing = [st.item.uid for st, r in zip(chunk, scored, strict=True) if r.hidden is None]
    if missing:  # a gap in the states would bias the analysis that reads them: refuse it
        raise SelfCorrectError(
            f"--save-hidden: the backend returned no hidden state for item {missing[0]} "
            f"(condition {ctx.condition}, {len(missing)} of {len(chunk)} in its batch); nothing "
            "was stored for them"
        )
    keys = [(ctx.model, ctx.job.benchmark, ctx.condition, ctx.job.readout, st.item.uid,
             st.reads) for st in chunk]  # fmt: skip
    ctx.hidden.write(keys, np.stack([r.hidden for r in scored]), ctx.backend.capture_layers)


def _generate_wave(ctx: _Context, states: list[_State]) -> None:
    for chunk in ctx.chunks(states):
        by_len: dict[int, list[_State]] = {}
        for st in chunk:
            by_len.setdefault(st.steps[st.pos].max_tokens, []).append(st)
        for max_tokens, group in by_len.items():
            prompts = [ctx.backend.render(st.conversation(ctx.job.system)) for st in group]
            keys = None
            if ctx.job.sampling is not None:  # each row its own seed: batch-independent text
                keys = [sample_key(ctx.job.sampling.seed, st.item.uid, ctx.condition, st.pos)
                        for st in group]  # fmt: skip
            _generate_group(ctx, group, prompts, max_tokens, keys)


STREAM_FLUSH = 16  # finished rows stored together while a streaming backend decodes the rest


def _generate_group(ctx: _Context, group: list[_State], prompts, max_tokens, keys) -> None:
    """Generate and store one group's turns. A streaming backend's rows are stored as they
    finish, STREAM_FLUSH at a time, so an interrupt loses only the rows still decoding."""
    texts: dict[int, str] = {}
    ready: list[int] = []

    def flush() -> None:
        # the states advance only once their rows are stored: a failed write leaves them to
        # be generated again, never stored under the next step
        batch = ready[:]
        ready.clear()
        rows = [ctx.turn(group[i], prompts[i], texts[i]) for i in batch]
        ctx.store.write(ctx.run_id, turns=rows)
        _advance_turns([group[i] for i in batch], [texts[i] for i in batch], "generate")

    def on_done(i: int, text: str) -> None:
        texts[i] = text
        ready.append(i)
        if len(ready) >= STREAM_FLUSH:
            flush()

    extra = {"on_done": on_done} if ctx.backend.streams else {}
    try:
        out = _call(ctx, group, ctx.backend.generate, prompts, max_tokens, ctx.job.sampling,
                    keys, **extra)  # fmt: skip
    except BaseException:
        if ready:  # keep what finished; the original error is what the user sees
            try:
                flush()
            except Exception:
                pass
        raise
    for i, text in enumerate(out):
        if i not in texts:
            texts[i] = text
            ready.append(i)
    flush()


def _take_turns(ctx: _Context, states, prompts, texts, kind: str) -> list[tuple]:
    """Apply generated turns to their states; return the rows to store."""
    rows = [ctx.turn(st, prompt, text) for st, prompt, text in zip(states, prompts, texts,
                                                                     strict=True)]  # fmt: skip
    _advance_turns(states, texts, kind)
    return rows


def _advance_turns(states, texts, kind: str) -> None:
    for st, text in zip(states, texts, strict=True):
        _after_turn(st, kind, text)
        st.pos += 1


def _critique_wave(ctx: _Context, states: list[_State]) -> None:
    """The critic model reads the question and the latest answer and writes feedback."""
    critic, spec = ctx.job.critic, ctx.job.library.critic
    for chunk in ctx.chunks(states):
        prompts = []
        for st in chunk:
            question = next(text for role, text in st.messages if role == "user")
            answer = st.messages[-1][1]
            ask = fill(spec.ask, {"question": question, "answer": answer})
            prompts.append(critic.render(Conversation((("user", ask),), spec.prefill)))
        texts = _call(ctx, chunk, critic.generate, prompts, spec.max_tokens, None)
        ctx.store.write(ctx.run_id, turns=_take_turns(ctx, chunk, prompts, texts, "critique"))


def _read_wave(ctx: _Context, states: list[_State]) -> None:
    job = ctx.job
    for chunk in ctx.chunks(states):
        prompts = [ctx.backend.render(st.conversation(ctx.job.system)) for st in chunk]
        answers = []
        if job.readout == "generate":
            # answers: always greedy
            texts = _call(ctx, chunk, ctx.backend.generate, prompts, ANSWER_TOKENS, None)
            results = [
                (None, None, *job.parser(st.item, t), t, None)
                for st, t in zip(chunk, texts, strict=True)
            ]
        else:
            results = []
            conts = [st.item.continuations(job.readout) for st in chunk]
            scored = _call(ctx, chunk, ctx.backend.score, prompts, conts)
            for res in scored:
                probs = softmax(res.logprobs)
                pred = max(range(len(probs)), key=probs.__getitem__)
                results.append((res.logprobs, probs, pred, "ok", None, res.n_tokens or None))
            _write_hidden(ctx, chunk, scored)
        for st, prompt, (logprobs, probs, pred, status, raw, n_tokens) in zip(
            chunk, prompts, results, strict=True
        ):
            answers.append(
                Answer(
                    model=ctx.model,
                    benchmark=job.benchmark,
                    condition=ctx.condition,
                    condition_hash=ctx.digest,
                    readout=job.readout,
                    uid=st.item.uid,
                    round=st.reads,
                    prompt=prompt,
                    candidates=st.item.continuations(job.readout),
                    logprobs=logprobs,
                    probs=probs,
                    pred=pred,
                    parse_status=status,
                    raw=raw,
                    n_tokens=n_tokens,
                )
            )
            _after_read(st, pred, raw, job.readout)
            st.pos += 1
        ctx.store.write(ctx.run_id, answers=answers)
        ctx.on_progress(len(chunk))
