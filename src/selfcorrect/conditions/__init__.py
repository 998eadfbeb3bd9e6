"""The condition library (a versioned TOML file) and the protocols it turns items into.

A protocol is a short list of steps (ask, prefill, generate, read). Single-turn conditions are
`ask(prompt + instruction), prefill(answer), read`; CoT and feedback rounds are just more steps.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfcorrect.errors import SelfCorrectError, unknown_choice
from selfcorrect.tomls import read_toml

StepKind = Literal["ask", "prefill", "generate", "critique", "read"]


@dataclass(frozen=True)
class Step:
    kind: StepKind
    text: str = ""  # template for ask/prefill; the read target for read
    max_tokens: int = 0  # for generate


@dataclass(frozen=True)
class Condition:
    name: str
    label: str
    provenance: str  # "verbatim" or "reconstruction"
    source: str
    description: str
    steps: Mapping[str, tuple[Step, ...]]  # benchmark -> protocol template
    aliases: tuple[str, ...] = ()
    requires_chat: bool = False  # refuse base models (no chat template) for this condition
    # benchmark -> (provenance, source) where a benchmark's text has its own
    per_benchmark: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def provenance_for(self, benchmark: str) -> tuple[str, str]:
        """(verbatim or reconstruction, source) of this condition's text for `benchmark`."""
        return self.per_benchmark.get(benchmark, (self.provenance, self.source))

    @property
    def benchmarks(self) -> list[str]:
        return sorted(self.steps)

    def version_hash(self, benchmark: str) -> str:
        """Hash of exactly what is sent to the model, so results of edited texts never mix."""
        return _digest({"name": self.name, "steps": step_specs(self.steps[benchmark])})

    def is_multi_turn(self, benchmark: str) -> bool:
        return any(s.kind == "generate" for s in self.steps[benchmark])


def step_specs(steps) -> list[list]:
    """Steps as stored and hashed: [kind, text, max_tokens] each."""
    return [[s.kind, s.text, s.max_tokens] for s in steps]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


ROUNDS_ENTRY = "(feedback rounds)"  # stored beside the conditions; no condition name has ( )
CRITIC_ENTRY = "(critic {})"  # the critic model's name


def is_round_entry(name: str) -> bool:
    """A stored conditions row that holds round texts (ROUNDS_ENTRY, CRITIC_ENTRY), not a
    condition: the prefix no library may give a condition."""
    return name.startswith("(")


@dataclass(frozen=True)
class Critic:
    """Extrinsic feedback: what the critic model is asked, and how its answer is passed on."""

    ask: str  # placeholders {question}, {answer}
    prefill: str
    max_tokens: int
    feedback: str  # prepended to the review instruction; placeholder {critique}
    provenance: str


@dataclass(frozen=True)
class Library:
    version: str
    conditions: Mapping[str, Condition]
    feedback: tuple[Step, ...]
    source_hash: str
    critic: Critic | None = None
    feedback_provenance: tuple[str, str] = ("verbatim", "")  # (provenance, source)

    def round_entries(self, critic: tuple[str, str] | None = None) -> list[tuple[str, str, dict]]:
        """The feedback round's texts (and, when a critic model (name, sha256) writes the
        feedback, its texts and weights) as stored condition entries (name, hash, spec): a
        condition's hash covers its own steps only, so rounds asked after an edit of these
        texts, or with other critic weights, would mix with those stored before."""
        prov, source = self.feedback_provenance
        entries = [(ROUNDS_ENTRY, step_specs(self.feedback), prov, source,
                    "texts of every round after the first answer")]  # fmt: skip
        if critic is not None and self.critic is not None:
            c, (model, sha256) = self.critic, critic
            entries.append((CRITIC_ENTRY.format(model),
                            [c.ask, c.prefill, c.max_tokens, c.feedback, f"sha256 {sha256}"],
                            c.provenance, "", "the critic model's texts and weights"))  # fmt: skip
        return [(name, _digest({"name": name, "steps": steps}),
                 {"label": label, "provenance": p, "source": src, "steps": steps})
                for name, steps, p, src, label in entries]  # fmt: skip

    def get(self, name: str) -> Condition:
        """By name or alias, ignoring case (the library refuses names that differ only so)."""
        key = name.strip().lower()
        for cond in self.conditions.values():
            if key == cond.name.lower() or key in cond.aliases:
                return cond
        raise unknown_choice("condition", name, self.conditions)

    def resolve(self, names: list[str], benchmark: str) -> list[Condition]:
        out = []
        for name in names:
            cond = self.get(name)
            if benchmark not in cond.steps:
                raise SelfCorrectError(
                    f"condition '{cond.name}' has no protocol for benchmark '{benchmark}' "
                    f"(it has: {', '.join(cond.benchmarks)})"
                )
            if cond not in out:
                out.append(cond)
        return out

    def check_fields(self, conditions: list[Condition], benchmark: str, fields) -> None:
        """Every placeholder the texts of these conditions (and the feedback round) use for
        `benchmark` is one of its item `fields`: caught before any model loads."""
        known = set(fields)
        texts = [(c.name, s.text) for c in conditions for s in c.steps[benchmark]
                 if s.kind in ("ask", "prefill")]  # fmt: skip
        texts += [("feedback", s.text) for s in self.feedback]
        for where, text in texts:
            for name in placeholders(text):
                if name not in known:
                    raise SelfCorrectError(
                        f"condition text of '{where}' uses {{{name}}}, which {benchmark} items "
                        f"do not have (they have: {', '.join(sorted(known))})"
                    )


def placeholders(template: str, where: str = "condition text") -> list[str]:
    """The {name} placeholders of a text; unbalanced braces or anything but a plain name
    (attribute access, format specs) is an error."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise SelfCorrectError(f"{where}: {exc} in {template[:60]!r}") from None
    names = []
    for _, name, spec, conv in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conv:
            raise SelfCorrectError(f"{where}: bad placeholder {{{name}}} in {template[:60]!r}")
        names.append(name)
    return names


def _parse_step(raw, where: str) -> Step:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise SelfCorrectError(f"{where}: each step must be one of ask/prefill/generate/read")
    ((kind, value),) = raw.items()
    if kind in ("ask", "prefill") and isinstance(value, str):
        return Step(kind, text=value)
    if kind == "generate" and isinstance(value, int) and value > 0:
        return Step("generate", max_tokens=value)
    if kind == "read" and isinstance(value, str):
        return Step("read", text=value)
    raise SelfCorrectError(f"{where}: bad step {raw!r}")


SLOT = "{instruction}"  # where a benchmark's prompt takes the instruction (else: at the end)


def with_instruction(prompt: str, instruction: str | None) -> str:
    """The prompt with the instruction in its slot (after one space), or appended."""
    if SLOT in prompt:
        return prompt.replace(SLOT, f" {instruction}" if instruction else "")
    return f"{prompt} {instruction}" if instruction else prompt


def _single_turn(prompt: str, prefill: str, instruction: str) -> tuple[Step, ...]:
    text = with_instruction(prompt, instruction)
    return (Step("ask", text), Step("prefill", prefill), Step("read", "answer"))


class _Raw(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _RawBenchmark(_Raw):
    prompt: str
    answer_prefill: str


class _RawFeedback(_Raw):
    ask: str
    prefill: str
    provenance: str = "verbatim"
    source: str = ""


class _RawCritic(_Raw):
    ask: str
    feedback: str
    prefill: str = ""
    max_tokens: int = Field(96, ge=1)
    provenance: str = "reconstruction"


class _RawProtocol(_Raw):
    instruction: str | None = None
    steps: list[dict[str, str | int]] | None = None
    provenance: Literal["verbatim", "reconstruction"] | None = None  # this benchmark's text
    source: str | None = None


class _RawCondition(_Raw):
    model_config = ConfigDict(extra="allow", strict=True)  # one table per benchmark
    provenance: Literal["verbatim", "reconstruction"]
    label: str | None = None
    source: str = ""
    description: str = ""
    aliases: list[str] = []
    requires_chat: bool = False


class _RawLibrary(_Raw):
    version: str | int
    benchmarks: dict[str, _RawBenchmark]
    feedback: _RawFeedback
    conditions: dict[str, _RawCondition]
    critic: _RawCritic | None = None


def _protocol(name: str, bench: str, raw, bspec: _RawBenchmark, origin: str):
    where = f"{origin}: condition {name}, {bench}"
    try:
        spec = _RawProtocol.model_validate(raw)
    except ValidationError as exc:
        raise SelfCorrectError(f"malformed condition library {_describe(exc, where)}") from None
    if spec.instruction is None and spec.steps is None:
        raise SelfCorrectError(f"{where}: give an instruction, steps, or both")
    if spec.steps is not None:  # {prompt} in steps: the prompt with the instruction, if any
        proto = tuple(_parse_step(s, where) for s in spec.steps)
    else:
        proto = _single_turn(bspec.prompt, bspec.answer_prefill, spec.instruction)
    if not proto or proto[-1].kind != "read":
        raise SelfCorrectError(f"{where}: the last step must be a read")
    prompt = with_instruction(bspec.prompt, spec.instruction)
    steps = tuple(Step(s.kind, s.text.replace("{prompt}", prompt), s.max_tokens)
                  for s in proto)  # fmt: skip
    for s in steps:
        if s.kind in ("ask", "prefill"):
            placeholders(s.text, where)
    return steps


def _describe(exc: ValidationError, origin: str) -> str:
    err = exc.errors()[0]
    where = ".".join(str(x) for x in err["loc"])
    return f"{origin}: {where}: {err['msg']}" if where else f"{origin}: {err['msg']}"


def _names(conditions: Mapping[str, Condition], origin: str) -> None:
    """Names and aliases are unique ignoring case: a name never hides another condition."""
    seen: dict[str, str] = {}
    for cond in conditions.values():
        if is_round_entry(cond.name):  # the store keeps the feedback rounds' texts so named
            raise SelfCorrectError(f"malformed condition library {origin}: condition names "
                                   f"starting with '(' are reserved ({cond.name!r})")  # fmt: skip
        for key in (cond.name.lower(), *cond.aliases):
            if key in seen and seen[key] != cond.name:
                raise SelfCorrectError(
                    f"malformed condition library {origin}: '{key}' names both condition "
                    f"'{seen[key]}' and condition '{cond.name}'"
                )
            seen[key] = cond.name


def parse_library(data: dict, origin: str, source_hash: str) -> Library:
    try:
        raw = _RawLibrary.model_validate(data)
    except ValidationError as exc:
        raise SelfCorrectError(f"malformed condition library {_describe(exc, origin)}") from None
    fb = raw.feedback
    for text in (fb.ask, fb.prefill):
        placeholders(text, f"{origin}: feedback")
    feedback = (Step("ask", fb.ask), Step("prefill", fb.prefill), Step("read", "answer"))
    conditions: dict[str, Condition] = {}
    for name, spec in raw.conditions.items():
        extra = spec.model_extra or {}
        unknown = sorted(set(extra) - set(raw.benchmarks))
        if unknown:
            raise SelfCorrectError(
                f"malformed condition library {origin}: condition {name} has a section for "
                f"unknown benchmark '{unknown[0]}'"
            )
        steps = {b: _protocol(name, b, extra[b], bspec, origin)
                 for b, bspec in raw.benchmarks.items() if b in extra}  # fmt: skip
        own = {b: (extra[b].get("provenance") or spec.provenance,
                   extra[b].get("source") or spec.source)
               for b in steps if isinstance(extra[b], dict)
               and ("provenance" in extra[b] or "source" in extra[b])}  # fmt: skip
        conditions[name] = Condition(
            name=name, label=spec.label or name, provenance=spec.provenance, source=spec.source,
            description=spec.description, steps=steps,
            aliases=tuple(a.strip().lower() for a in spec.aliases),
            requires_chat=spec.requires_chat, per_benchmark=own,
        )  # fmt: skip
    _names(conditions, origin)
    critic = None
    if raw.critic is not None:
        c = raw.critic
        if set(placeholders(c.ask, f"{origin}: critic")) - {"question", "answer"}:
            raise SelfCorrectError(f"{origin}: critic.ask may use only {{question}}, {{answer}}")
        if set(placeholders(c.feedback, f"{origin}: critic")) - {"critique"}:
            raise SelfCorrectError(f"{origin}: critic.feedback may use only {{critique}}")
        critic = Critic(c.ask, c.prefill, c.max_tokens, c.feedback, c.provenance)
    return Library(str(raw.version), conditions, feedback, source_hash, critic,
                   (fb.provenance, fb.source))  # fmt: skip


def default_library_path() -> Path:
    return Path(str(files("selfcorrect.conditions") / "library.toml"))


def load_library(path: str | Path | None = None) -> Library:
    """The shipped library, or a user's file in the same format (which replaces it)."""
    p = Path(path) if path else default_library_path()
    raw, data = read_toml(p, "condition library")
    return parse_library(data, str(p), hashlib.sha256(raw).hexdigest()[:16])


class _StrictFields(dict):
    def __missing__(self, key):
        raise SelfCorrectError(f"condition text uses {{{key}}}, which this item does not have")


def fill(template: str, fields: Mapping[str, str]) -> str:
    # string.Formatter so that only {name} placeholders are read; no attribute access
    placeholders(template)
    return template.format_map(_StrictFields(fields))


def protocol(
    condition: Condition,
    benchmark: str,
    fields: Mapping[str, str],
    rounds: int,
    lib: Library,
    critic: bool = False,
) -> list[Step]:
    """The concrete steps for one item: the condition's, then `rounds` feedback rounds (each
    preceded by a critique from a second model when `critic`)."""
    if rounds < 0:
        raise SelfCorrectError(f"rounds must be >= 0, got {rounds}")
    if critic and lib.critic is None:
        raise SelfCorrectError("the condition library has no [critic] section")
    feedback = ([Step("critique")] if critic else []) + list(lib.feedback)
    template = list(condition.steps[benchmark]) + feedback * rounds
    return [
        Step(s.kind, fill(s.text, fields) if s.kind in ("ask", "prefill") else s.text, s.max_tokens)
        for s in template
    ]
