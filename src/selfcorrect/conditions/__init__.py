"""The condition library (a versioned TOML file) and the protocols it turns items into.

A protocol is a short list of steps (ask, prefill, generate, read). Single-turn conditions are
`ask(prompt + instruction), prefill(answer), read`; CoT and feedback rounds are just more steps.
"""

from __future__ import annotations

import hashlib
import json
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Literal

from selfcorrect.errors import SelfCorrectError, unknown_choice

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

    @property
    def benchmarks(self) -> list[str]:
        return sorted(self.steps)

    def version_hash(self, benchmark: str) -> str:
        """Hash of exactly what is sent to the model, so results of edited texts never mix."""
        spec = [[s.kind, s.text, s.max_tokens] for s in self.steps[benchmark]]
        blob = json.dumps({"name": self.name, "steps": spec}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def is_multi_turn(self, benchmark: str) -> bool:
        return any(s.kind == "generate" for s in self.steps[benchmark])


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

    def get(self, name: str) -> Condition:
        key = name.strip().lower()
        for cond in self.conditions.values():
            if key == cond.name or key in cond.aliases:
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


def _single_turn(prompt: str, prefill: str, instruction: str) -> tuple[Step, ...]:
    text = f"{prompt} {instruction}" if instruction else prompt
    return (Step("ask", text), Step("prefill", prefill), Step("read", "answer"))


def parse_library(data: dict, origin: str, source_hash: str) -> Library:
    try:
        benches = data["benchmarks"]
        fb = data["feedback"]
        feedback = (Step("ask", fb["ask"]), Step("prefill", fb["prefill"]), Step("read", "answer"))
        conditions: dict[str, Condition] = {}
        for name, spec in data["conditions"].items():
            steps: dict[str, tuple[Step, ...]] = {}
            for bench, bspec in benches.items():
                if bench not in spec:
                    continue
                where = f"{origin}: condition {name}, {bench}"
                if "steps" in spec[bench]:
                    raw = spec[bench]["steps"]
                    proto = tuple(_parse_step(s, where) for s in raw)
                else:
                    proto = _single_turn(
                        bspec["prompt"], bspec["answer_prefill"], spec[bench]["instruction"]
                    )
                if not proto or proto[-1].kind != "read":
                    raise SelfCorrectError(f"{where}: the last step must be a read")
                steps[bench] = tuple(
                    Step(s.kind, s.text.replace("{prompt}", bspec["prompt"]), s.max_tokens)
                    for s in proto
                )
            conditions[name] = Condition(
                name=name,
                label=spec.get("label", name),
                provenance=spec["provenance"],
                source=spec.get("source", ""),
                description=spec.get("description", ""),
                steps=steps,
                aliases=tuple(a.lower() for a in spec.get("aliases", ())),
                requires_chat=bool(spec.get("requires_chat", False)),
            )
        critic = None
        if "critic" in data:
            c = data["critic"]
            critic = Critic(
                c["ask"],
                c.get("prefill", ""),
                int(c.get("max_tokens", 96)),
                c["feedback"],
                c.get("provenance", "reconstruction"),
            )
        return Library(str(data["version"]), conditions, feedback, source_hash, critic)
    except KeyError as exc:
        raise SelfCorrectError(f"malformed condition library {origin}: missing {exc}") from None
    except TypeError as exc:
        raise SelfCorrectError(f"malformed condition library {origin}: {exc}") from None


def default_library_path() -> Path:
    return Path(str(files("selfcorrect.conditions") / "library.toml"))


def load_library(path: str | Path | None = None) -> Library:
    """The shipped library, or a user's file in the same format (which replaces it)."""
    p = Path(path) if path else default_library_path()
    try:
        raw = p.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except OSError as exc:
        raise SelfCorrectError(f"cannot read condition library {p}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SelfCorrectError(f"malformed condition library {p}: {exc}") from None
    return parse_library(data, str(p), hashlib.sha256(raw).hexdigest()[:16])


class _StrictFields(dict):
    def __missing__(self, key):
        raise SelfCorrectError(f"condition text uses {{{key}}}, which this item does not have")


def fill(template: str, fields: Mapping[str, str]) -> str:
    # string.Formatter so that only {name} placeholders are read; no attribute access
    for _, name, spec, _conv in string.Formatter().parse(template):
        if name is not None and (not name.isidentifier() or spec):
            raise SelfCorrectError(f"bad placeholder {{{name}}} in condition text")
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
