"""Sweep plans: models x runs in one TOML file, run one model at a time into one results
directory (resumable like any run). The top level sets any run option for every run (see
RunSpec); each [[runs]] entry sets options of its own (not `models` or `out`).

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

Every run of every model is validated (and every model resolved, by the runner) before the
first answer is computed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from selfcorrect.errors import SelfCorrectError
from selfcorrect.spec import DEFAULT_OUT, RunSpec
from selfcorrect.tomls import read_toml

PER_PLAN = ("models", "out", "rules")  # set once for the whole plan (one report, one set of rules)


@dataclass(frozen=True)
class SweepPlan:
    path: Path
    out: Path
    specs: list[RunSpec]  # model-major: every run of the first model, then the next model's

    @property
    def bootstrap(self) -> int:
        return self.specs[0].bootstrap

    @property
    def seed(self) -> int:
        return self.specs[0].seed


def load_plan(
    path: str | Path,
    out: str | Path | None = None,
    only: str | list[str] | None = None,
    **overrides,
) -> SweepPlan:
    """The plan's runs as run specifications, every one validated. `out` replaces the plan's
    results directory; `only` keeps the plan's runs of these of its models (in the order
    given: a plan split over sessions or machines into the same store); `overrides` set
    options of every run (e.g. ray)."""
    path = Path(path)
    _, raw = read_toml(path, "plan")
    runs = raw.pop("runs", None)
    if not isinstance(runs, list) or not runs or not all(isinstance(r, dict) for r in runs):
        raise SelfCorrectError(f"plan {path}: runs: Field required (one or more [[runs]])")
    planned = raw.pop("out", None)
    if planned is not None and not isinstance(planned, str):
        raise SelfCorrectError(f"plan {path}: out: expected a directory name, got {planned!r}")
    target = Path(out or planned or DEFAULT_OUT)
    raw.setdefault("models", ["ladder"])
    raw.update(overrides)  # the command line wins over the plan (its top level and its runs)
    top = RunSpec.build(where=f"plan {path}", **raw)
    models = top.models
    if only:
        models = RunSpec.build(models=only).models
        missing = [m for m in models if m not in top.models]
        if missing:
            raise SelfCorrectError(f"plan {path}: model {missing[0]!r} is not one of the "
                                   f"plan's models ({', '.join(top.models)})")  # fmt: skip
    specs = []
    for model in models:
        for k, entry in enumerate(runs):
            fixed = [key for key in PER_PLAN if key in entry]
            if fixed:
                raise SelfCorrectError(f"plan {path}: runs.{k}.{fixed[0]}: set it once, at "
                                       "the top of the plan")  # fmt: skip
            options = {**raw, **entry, **overrides, "models": [model], "out": target}
            specs.append(RunSpec.build(where=f"plan {path}: runs.{k}", **options))
    return SweepPlan(path, target, specs)
