"""Sweep plans: models x benchmarks x conditions x rounds x readout in one TOML file, run one
model at a time into one results directory (resumable like any run).

    out = "study"            # results directory
    models = ["ladder"]      # "ladder" = the four packaged models, smallest first
    limit = 264              # items per benchmark sample ("all" for every item)
    seed = 0

    [[runs]]
    benchmark = "bbq"
    conditions = ["baseline", "instruct", "s2", "s3", "s4", "negation", "oracle", "cot"]

    [[runs]]
    benchmark = "bbq"
    conditions = ["baseline", "instruct"]
    rounds = 2               # round 0 is shared with the run above: only rounds 1-2 are new
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from selfcorrect.errors import SelfCorrectError
from selfcorrect.registry import REGISTRY

LADDER = sorted(REGISTRY, key=lambda name: REGISTRY[name].params)


def expand_models(names: list[str]) -> list[str]:
    """'ladder' stands for the packaged models, smallest first."""
    out: list[str] = []
    for name in names:
        out += LADDER if name == "ladder" else [name]
    return list(dict.fromkeys(out))


class PlanRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    benchmark: str = "bbq"
    conditions: list[str] = Field(min_length=1)
    rounds: int = Field(0, ge=0)
    readout: list[Literal["logprob", "generate"]] = ["logprob"]
    limit: int | Literal["all"] | None = None  # overrides the plan's

    @field_validator("readout", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid")
    out: str | None = None
    models: list[str] = Field(default_factory=lambda: ["ladder"], min_length=1)
    limit: int | Literal["all"] = 264
    seed: int = 0
    bootstrap: int = Field(1000, ge=0)
    backend: Literal["transformers", "llamacpp"] = "transformers"
    base_url: str | None = None
    runs: list[PlanRun] = Field(min_length=1)


def load_plan(path: str | Path) -> Plan:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SelfCorrectError(f"cannot read plan {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SelfCorrectError(f"plan {path} is not valid TOML: {exc}") from None
    try:
        return Plan.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise SelfCorrectError(f"plan {path}: {where}: {err['msg']}") from None
