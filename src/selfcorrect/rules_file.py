"""The verdict rules as data (rules/default.toml, or a user's file): validated, hashed.

The hash covers the file's bytes, the version of the code that applies them (RULES_LOGIC) and
the validity gates' thresholds (a model the gate lets in is evidence), so a change to any is a
change of rules. Runs record it when they start (the manifest's
`rules`), and a report compares the rules it applies with those recorded before the first
answer was stored."""

from __future__ import annotations

import hashlib
from importlib.resources import files
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from selfcorrect.errors import SelfCorrectError
from selfcorrect.tomls import read_toml

RULES_LOGIC = "5"  # bump when verdicts.py judges the same rules differently


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scope(_M):
    kind: Literal["chat", "base"] | None = None
    aligned: bool | None = None
    alignment: str | None = None  # a word the model's alignment must name, e.g. "RLHF"
    min_params: float | None = None
    max_params: float | None = None

    def holds(self, info: dict) -> bool:
        params = info.get("params")
        chat = info.get("kind") == "chat"
        aligned = chat and not str(info.get("alignment", "none")).startswith("none")
        if self.kind is not None and (info.get("kind") != self.kind):
            return False
        if self.aligned is not None and aligned != self.aligned:
            return False
        if self.alignment and self.alignment.lower() not in str(info.get("alignment", "")).lower():
            return False
        if (self.min_params is not None or self.max_params is not None) and not params:
            return False
        if self.min_params is not None and params < self.min_params:
            return False
        return not (self.max_params is not None and params > self.max_params)

    def describe(self) -> str:
        parts = [self.kind or "", "aligned" if self.aligned else "",
                 f"({self.alignment})" if self.alignment else ""]  # fmt: skip
        if self.min_params:
            parts.append(f">= {self.min_params / 1e9:g}B parameters")
        if self.max_params:
            parts.append(f"<= {self.max_params / 1e6:g}M parameters")
        return " ".join(p for p in parts if p) or "any model"


class Contrast(_M):
    condition: str = ""
    reference: str = ""
    metric: Literal["bias", "accuracy"] = "bias"
    context: Literal["ambig", "disambig"] = "ambig"
    direction: Literal["up", "down"] = "down"


class Also(_M):
    metric: Literal["bias", "accuracy"]
    context: Literal["ambig", "disambig"] = "ambig"


class Hypothesis(_M):
    claim: str
    source: str
    kind: Literal[
        "effect", "interaction", "gap_shrinks", "threshold", "ordered", "winogender", "law_parity"
    ]
    scope: str
    contrast: Contrast = Contrast()
    control: str | None = None
    versus: str | None = None
    versus_larger: bool = False  # each `versus` model must be larger than its `scope` model
    also: Also | None = None
    specific: str | None = None
    condition: str | None = None
    threshold: float | None = None
    steps: list[list[str]] | None = None
    directions: list[Literal["up", "down"]] | None = None  # per step (winogender)
    baseline_range: list[float] | None = None


class Rules(_M):
    version: str
    alpha: float = Field(0.05, gt=0, lt=1)
    multiplicity: Literal["holm", "bh"] = "holm"
    rope: float = Field(0.05, ge=0)
    readout: str = "logprob"
    permutations: int = Field(2000, ge=100)
    bootstrap: int = Field(1000, ge=100)
    seed: int = Field(0, ge=0)  # every bootstrap and permutation of the verdicts
    scopes: dict[str, Scope]
    hypotheses: dict[str, Hypothesis]

    def scope(self, name: str) -> Scope:
        return self.scopes[name]


def _gates() -> str:
    import json

    from selfcorrect.metrics.choices import GATE
    from selfcorrect.metrics.law import LAW_GATE

    return json.dumps({"bbq": GATE, "law": LAW_GATE}, sort_keys=True)


def default_rules_path() -> Path:
    return Path(str(files("selfcorrect") / "rules" / "default.toml"))


def load_rules(path: str | Path | None = None) -> tuple[Rules, str]:
    """(rules, hash): the shipped default or a user's file, validated; scope names checked."""
    p = Path(path) if path else default_rules_path()
    raw, data = read_toml(p, "rules")
    meta = {k: data.pop(k) for k in list(data) if k in Rules.model_fields}
    try:
        rules = Rules(**meta, hypotheses=data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise SelfCorrectError(f"rules {p}: {where}: {err['msg']}") from None
    for hid, h in rules.hypotheses.items():
        for name in (h.scope, h.control, h.versus):
            if name is not None and name not in rules.scopes:
                raise SelfCorrectError(f"rules {p}: {hid} names an unknown scope '{name}'")
    digest = hashlib.sha256(raw + f"\nlogic {RULES_LOGIC}\ngates {_gates()}".encode()).hexdigest()
    return rules, digest
