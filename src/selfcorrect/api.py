"""The Python API: the same verbs as the CLI, for notebooks. Each verb builds what the layers
below need (a RunSpec, a plan, a kit) and hands it on."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from selfcorrect import runner
from selfcorrect.catalog import KITS, get_kit
from selfcorrect.conditions import load_library
from selfcorrect.errors import SelfCorrectError, unknown_choice
from selfcorrect.metrics.bbq import UNPARSEABLE, bias_fns
from selfcorrect.plan import load_plan
from selfcorrect.registry import REGISTRY, is_installed
from selfcorrect.report.study import (
    Report,
    ReportOptions,
    kit_tables,
    report_dir,
    write_benchmark,
)
from selfcorrect.rules_file import load_rules
from selfcorrect.spec import RunSpec


@dataclass
class RunResult:
    directory: Path
    run_id: str
    summary: pd.DataFrame
    paired: pd.DataFrame
    manifest: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # this benchmark's tables


def run(spec: RunSpec | str | list[str] | None = None, /, *, progress: bool = True,
        write_report: bool = True, **options) -> RunResult:  # fmt: skip
    """Evaluate models on a benchmark under conditions; store everything in `out`; resume
    whatever is already stored there. Options are RunSpec's fields (e.g. models, benchmark,
    conditions, limit, rounds, readout, out; see `selfcorrect run --help`); the first
    argument may be a RunSpec, or the models."""
    if not isinstance(spec, RunSpec):
        spec = RunSpec.build(**options, **({} if spec is None else {"models": spec}))
    res = runner.run(spec, progress)
    if not write_report:
        return RunResult(res.directory, res.run_id, pd.DataFrame(), pd.DataFrame(), res.manifest)
    rep = report(res.directory, n_boot=spec.bootstrap, seed=spec.seed, rules=spec.rules)
    prefix = f"{spec.benchmark}_"
    mine = {k[len(prefix) :]: v for k, v in rep.tables.items() if k.startswith(prefix)}
    return RunResult(res.directory, res.run_id, mine.get("summary", pd.DataFrame()),
                     mine.get("paired", pd.DataFrame()), res.manifest, mine)  # fmt: skip


def run_plan(path: str | Path, out: str | Path | None = None, progress: bool = True,
             only: str | list[str] | None = None, **overrides) -> Report:  # fmt: skip
    """A sweep plan (see selfcorrect.plan): every model in turn (or only those of `only`)
    through every run of the plan, into one results directory; then one report with the
    verdicts."""
    plan = load_plan(path, out, only, **overrides)
    runner.run_all(plan.specs, progress)
    return report(plan.out, n_boot=plan.bootstrap, seed=plan.seed, rules=plan.specs[0].rules)


def report(directory: str | Path, n_boot: int = 1000, seed: int = 0,
           reference: str = "baseline", bias_variant: str = "bbq",
           out: str | Path | None = None, unparseable: str = "drop",
           rules: str | Path | None = None) -> Report:  # fmt: skip
    """Recompute all metrics from a results directory and write report files (no model; the
    store is only read); `bias_variant` names an alternative BBQ bias score ("helm");
    `unparseable` "wrong" counts unreadable answers as wrong instead of leaving them out; `out`
    puts the report elsewhere than DIR/report (e.g. when DIR is read-only); `rules` is a verdict
    rules file (default: the shipped rules/default.toml)."""
    bias_fns(bias_variant)  # an unknown name fails before any work
    if unparseable not in UNPARSEABLE:
        raise unknown_choice("unparseable handling", unparseable, UNPARSEABLE)
    load_rules(rules)
    options = ReportOptions(n_boot, seed, reference, bias_variant, unparseable, rules)
    return report_dir(directory, KITS, out, options)


def score(benchmark: str, path: str | Path, out: str | Path | None = None, n_boot: int = 1000,
          seed: int = 0, reference: str = "baseline") -> dict[str, pd.DataFrame]:  # fmt: skip
    """Score a plain prediction table (category, example_id, pred 0-2 [, model, condition,
    round]) with the same metrics as `run`; writes CSV and Markdown next to it or into `out`."""
    kit = get_kit(benchmark)
    outcomes = kit.read_predictions(path)
    tables = kit_tables(kit, outcomes, n_boot, seed, reference)
    target = Path(out) if out else Path(path).with_name(Path(path).stem + "-scores")
    try:
        write_benchmark(tables, target, f"selfcorrect score: {Path(path).name}", kit.section)
    except OSError as exc:
        raise SelfCorrectError(f"cannot write to {target}: {exc.strerror}") from None
    return tables


def power(directory: str | Path, effect: float = 5.0, condition: str = "instruct",
          reference: str = "baseline", metric: str = "bias", context: str = "ambig",
          tests: int | None = None, rules: str | Path | None = None,
          seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """From a pilot run's BBQ answers: per model, the items per condition a change of `effect`
    points (x100 scale) needs, given its template-clustered standard error, corrected for
    `tests` tests (default: the number of tests the rules make on this store)."""
    from selfcorrect.store import Store
    from selfcorrect.verdicts import IN_RANGE, Inputs, judge, power_table

    if tests is not None and tests < 1:
        raise SelfCorrectError(f"tests must be >= 1 (the tests corrected for), got {tests}")
    rule_set, _ = load_rules(rules)
    store = Store(directory, read_only=True)
    try:
        outcomes, models = store.outcomes("bbq"), store.models()
    finally:
        store.close()
    if outcomes.empty:
        raise SelfCorrectError(f"no BBQ answers in {directory}")
    kit = get_kit("bbq")
    gate = kit_tables(kit, outcomes, 0, seed, reference)["gate"]
    inputs = Inputs(kit.verdict_items(outcomes), gate)
    if tests is None:  # the family the contrast would be judged in: in range if any is
        t = judge(inputs, models, rule_set)[1]
        tests = max(1, int((t["range"] == IN_RANGE).sum()) or len(t)) if not t.empty else 1
    return power_table(inputs, models, rule_set, effect / 100, condition, reference, metric,
                       context, tests)  # fmt: skip


def analyze_hidden(directory: str | Path, seed: int = 0) -> tuple[pd.DataFrame, list[Path]]:
    """Per model x condition x layer: round-to-round shift, its cosine with the biased-minus-
    unbiased direction, and a held-out linear probe (see selfcorrect.report.hidden)."""
    from selfcorrect.report import hidden

    table = hidden.analyze(directory, seed)
    if table.empty:
        raise SelfCorrectError(f"no hidden states in {directory}: run with --save-hidden LAYERS")
    return table, hidden.write(directory, table)


def export_store(directory: str | Path, dest: str | Path, hidden: str = "all",
                 force: bool = False) -> dict:  # fmt: skip
    """The store as plain files a repository can keep (see selfcorrect.archive); `hidden`:
    whose hidden states to copy ("all", "none" or model names); `force`: drop archived runs
    the store lacks."""
    from selfcorrect import archive

    return archive.export_store(directory, dest, hidden, force)


def restore_store(src: str | Path, directory: str | Path) -> dict[str, int]:
    """A store rebuilt (or completed) from an exported archive; rows already there are kept."""
    from selfcorrect import archive

    return archive.restore_store(src, directory)


def models() -> pd.DataFrame:
    """The registry with size and whether each model is installed."""
    return pd.DataFrame(
        [
            {"name": s.name, "params_m": round(s.params / 1e6), "kind": s.kind,
             "family": s.family, "alignment": s.alignment, "size_mb": s.size_mb,
             "quantisation": s.quantisation, "installed": is_installed(s),
             "install": s.install, "description": s.description}
            for s in REGISTRY.values()
        ]
    )  # fmt: skip


def conditions(library: str | Path | None = None, benchmark: str | None = None) -> list[dict]:
    lib = load_library(library)
    out = []
    for c in lib.conditions.values():
        for bench in c.benchmarks:
            if benchmark and bench != benchmark:
                continue
            steps = [{"kind": s.kind, "text": s.text, "max_tokens": s.max_tokens}
                     for s in c.steps[bench]]  # fmt: skip
            out.append({"name": c.name, "label": c.label, "benchmark": bench,
                        "provenance": c.provenance_for(bench)[0],
                        "source": c.provenance_for(bench)[1],
                        "aliases": list(c.aliases), "hash": c.version_hash(bench),
                        "description": c.description, "steps": steps})  # fmt: skip
    return out


def benchmarks() -> list[dict]:
    return [
        {"name": name, "description": kit.benchmark.description,
         "categories": kit.benchmark.categories()}
        for name, kit in KITS.items()
    ]  # fmt: skip


def _plain(obj):
    """JSON-able data with missing numbers as null (strict parsers reject NaN)."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or obj is pd.NA or obj is pd.NaT:
        return None
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return _plain(obj.item())
    return obj if isinstance(obj, (str, int, float, bool)) else str(obj)


def dumps(obj) -> str:
    return json.dumps(_plain(obj), indent=2, allow_nan=False)
