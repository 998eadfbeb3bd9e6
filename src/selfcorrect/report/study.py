"""The report of a results store: every metric recomputed from the stored answers (no model),
one folder per benchmark (CSV tables, figures, report.md and report.html) and the study page
(report.md and a self-contained report.html) with the verdicts on methodology.md's
hypotheses. Benchmarks are handed in as kits (see selfcorrect.catalog): this module knows no
benchmark by name."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pandas as pd

from selfcorrect import faults
from selfcorrect.conditions import is_round_entry
from selfcorrect.contrasts import named_contrasts
from selfcorrect.metrics.format import fmt_ci_column
from selfcorrect.report import rounds
from selfcorrect.report.render import Block, write_pages
from selfcorrect.report.section import Section, Tables
from selfcorrect.rules_file import default_rules_path, load_rules
from selfcorrect.store import Store
from selfcorrect.verdicts import Inputs, judge


class Kit(Protocol):
    """What the report needs of a registered benchmark."""

    family: str
    section: Section
    table_options: frozenset[str]
    tables: Callable[..., Tables]
    verdict_items: Callable[[pd.DataFrame], pd.DataFrame] | None


@dataclass
class Report:
    directory: Path
    tables: dict[str, pd.DataFrame]
    files: list[Path]


def kit_tables(kit: Kit, outcomes: pd.DataFrame, n_boot: int, seed: int, reference: str,
               **options) -> Tables:  # fmt: skip
    """The kit's metric tables, with the options it takes (e.g. BBQ's bias variant)."""
    extra = {k: v for k, v in options.items() if k in kit.table_options}
    return kit.tables(outcomes, n_boot=n_boot, seed=seed, reference=reference, **extra)


def write_benchmark(
    tables: Tables,
    out: Path,
    title: str,
    section: Section,
    preface: list[Block] = (),
    transcripts: list[Block] = (),
    models: dict[str, dict] | None = None,
) -> tuple[list[Path], list[Block]]:
    """CSV per table, figures, and the benchmark's report as Markdown and self-contained HTML;
    also returns the report's body, for the study page."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, df in tables.items():
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        files.append(path)
    figures = section.figures(tables, models or {}, out) + rounds.figures(tables, out)
    files += figures
    body = [*section.blocks(tables), *rounds.blocks(tables)]
    shown = {b[1] for b in body if b[0] == "img"}
    extra = [p.name for p in figures if p.suffix == ".png" and p.name not in shown]
    if extra:
        body += [("h2", "More figures"), *(("img", name) for name in extra)]
    body.append(("p", "Full tables: " + ", ".join(p.name for p in files if p.suffix == ".csv")))
    body += list(transcripts)
    files += write_pages([("h1", title), *preface, *body], out)
    return files, body


def manifest_blocks(store: Store) -> list[Block]:
    runs = []
    for r in store.runs():
        m = r["manifest"]
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started"]))
        runs.append(
            f"{r['run_id']}: {started} UTC, status {r['status']}, selfcorrect "
            f"{m.get('selfcorrect_version')}, {m.get('benchmark')}, {m.get('n_items')} items, "
            f"seed {m.get('seed')}, rounds {m.get('rounds')}, readouts {m.get('readouts')}, "
            f"wall {m.get('wall_s', 'n/a')} s, peak RSS {m.get('peak_rss_mb', 'n/a')} MB, "
            f"{_reasoning(m)}"
        )
    answered = store.answered()
    models = [
        f"{name}: sha256 {info['sha256'][:16]}..., {info.get('description', '')} "
        f"({info.get('kind', '?')}, {info.get('alignment', '?')})"
        + ("" if name in answered["models"] else " - no answers")
        for name, info in store.models().items()
    ]
    used = answered["conditions"]
    conditions = [
        f"{c['condition']} ({c['benchmark']}, {c.get('provenance')}, hash {c['hash']}): "
        f"{c.get('label', '')}"
        + (
            ""
            if (c["benchmark"], c["condition"]) in used or is_round_entry(c["condition"])
            else " - no answers"
        )
        for c in store.conditions()
    ]
    return [("h2", "Runs"), ("list", runs), ("h2", "Models"), ("list", models),
            ("h2", "Conditions"), ("list", conditions), *_probe_blocks(store)]  # fmt: skip


def cost_table(store: Store) -> pd.DataFrame:
    """Wall time and peak memory per model x part (the runs of one command, resumed or not,
    summed): what each part of a study cost. A run whose process was killed has no timing; the
    span from its first to its last answer is given instead (a lower bound). "peak scope" is
    "run" when every run's peak was its own, "process" when one's was the peak of its process
    since it started (no reset on that platform, or a store from before 2026-12-06), which
    can be an earlier, larger part's."""
    per_run, span = store.answers_per_run(), store.answer_span_per_run()
    parts: dict[tuple, dict] = {}
    for r in store.runs():
        m = r["manifest"]
        spec = m.get("spec") or {}
        sampled = m.get("reasoning_sampling") or {}
        part = (f"{m.get('benchmark')}: {', '.join(spec.get('conditions') or [])}; "
                f"{m.get('n_items')} items; readout {', '.join(m.get('readouts') or [])}; "
                f"rounds {m.get('rounds', 0)}; system prompt {m.get('system_prompt', 'default')}"
                + (f"; {m.get('reasoning_samples', 1)} reasoning(s) at T = "
                   f"{sampled.get('temperature')}" if sampled else ""))  # fmt: skip
        key = (", ".join(m.get("models") or {}), part)
        blank = {"model": key[0], "part": part, "runs": 0, "wall_s": 0.0, "untimed runs": 0,
                 "untimed answer span s": 0.0, "peak_rss_mb": 0.0, "peak scope": "run",
                 "answers": 0}  # fmt: skip
        row = parts.setdefault(key, blank)
        row["runs"] += 1
        row["answers"] += per_run.get(r["run_id"], 0)
        if m.get("wall_s") is None:  # its answers' first-to-last span bounds its wall time
            row["untimed runs"] += 1
            row["untimed answer span s"] += span.get(r["run_id"]) or 0.0
        else:
            row["wall_s"] += m["wall_s"]
            row["peak_rss_mb"] = max(row["peak_rss_mb"], m.get("peak_rss_mb") or 0.0)
            if m.get("peak_rss_scope") != "run":  # stores before 2026-12-06 kept no scope
                row["peak scope"] = "process"
    out = pd.DataFrame(parts.values())
    if not out.empty:
        out["wall"] = [f"{int(w // 3600)}:{int(w % 3600 // 60):02d}:{int(w % 60):02d}"
                       for w in out["wall_s"]]  # fmt: skip
        out["peak RSS GB"] = (out.pop("peak_rss_mb") / 1024).round(2)
    return out


def _probe_blocks(store: Store) -> list[Block]:
    """What each model was shown around a question (its template's system text, or none),
    per system-prompt setting, from the runs' manifests."""
    probes: dict[tuple[str, str], str] = {}
    for r in store.runs():
        m = r["manifest"]
        for model, entry in (m.get("models") or {}).items():
            if isinstance(entry, dict) and entry.get("prompt_probe"):
                probes[(model, m.get("system_prompt", "default"))] = entry["prompt_probe"]
    if not probes:
        return []
    out: list[Block] = [("h2", "Prompt format per model (system prompt setting: what is sent)")]
    out += [("pre", f"{model} / system prompt: {system}", text)
            for (model, system), text in sorted(probes.items())]  # fmt: skip
    return out


def _reasoning(m: dict) -> str:
    s = m.get("reasoning_sampling")
    if not s:
        return "reasoning greedy (a departure from G23, which sampled it at T = 1)"
    return (
        f"reasoning sampled at T = {s.get('temperature')}, top-p {s.get('top_p')}, "
        f"{m.get('reasoning_samples', 1)} sample(s) per item"
    )


def model_table(models: dict[str, dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model": name,
                "parameters": f"{info['params'] / 1e6:,.0f}M" if info.get("params") else "n/a",
                "family": info.get("family", "n/a"),
                "kind": info.get("kind", "n/a"),
                "alignment": info.get("alignment", "n/a"),
                "weights": info.get("quantisation") or "as stored",
                "source": info.get("source", "n/a"),
            }
            for name, info in models.items()
        ]
    )


def transcript_blocks(store: Store, benchmark: str, per_condition: int = 2) -> list[Block]:
    """A few whole conversations per model x condition x readout: the last round's prompt
    holds everything said before (reasoning, answers, feedback), then the answer read."""
    tr = store.transcripts(benchmark)
    if tr.empty:
        return []
    last = tr.sort_values("round").groupby(["model", "condition", "readout", "uid"]).tail(1)
    blocks: list[Block] = [("h2", "Transcripts (sample; model text verbatim)")]
    for (model, cond, readout), g in last.groupby(["model", "condition", "readout"], sort=True):
        for row in g.sort_values("uid").head(per_condition).itertuples():
            answer = (
                row.raw
                if isinstance(row.raw, str)
                else (f"option {row.pred}" if row.pred == row.pred else "none")
            )
            body = (
                row.prompt
                + f"\n--- answer read ({readout}, round {row.round}): {answer}"
                + (f"; probabilities {row.probs}" if isinstance(row.probs, str) else "")
            )
            blocks.append(("pre", f"{model} / {cond} / {row.uid} ({row.parse_status})", body))
    return blocks


def rules_status(store: Store, digest: str) -> str:
    """ "pre-registered" when the rules applied are those recorded by the first run, before
    its first answer was stored; else "exploratory: ..." with both hashes."""
    recorded = [r["manifest"].get("rules", {}).get("sha256") for r in store.runs()]
    first = recorded[0] if recorded else None
    if first == digest and all(h in (None, digest) for h in recorded):
        return "pre-registered"
    was = first[:12] if first else "none recorded"
    return (f"exploratory: these rules ({digest[:12]}) differ from those recorded before the "
            f"first answer was stored ({was})")  # fmt: skip


def rules_record(store: Store, digest: str) -> str:
    """When the applied rules' hash was first recorded, against when the first answer was
    stored."""
    runs = [r for r in store.runs() if r["manifest"].get("rules", {}).get("sha256") == digest]
    first = store.first_answer_time()
    if first is None:
        return ""
    utc = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))  # noqa: E731
    if not runs:
        return f"No run recorded these rules; the store's first answer was stored at {utc(first)}."
    r = runs[0]
    return (f"The first run ({r['run_id']}) recorded the rules' hash "
            f"{digest[:12]} when it started, {utc(r['started'])}; "
            f"the store's first answer was stored at {utc(first)}.")  # fmt: skip


def _verdict_blocks(verdict, tests, rules_text, digest, status, record="") -> list[Block]:
    return [
        ("h2", "Verdicts on the hypotheses (methodology.md section 1), by the rules below"),
        ("p", f"Rules sha256 {digest}: {status}. {record}".strip()),
        ("table", verdict),
        ("h2", "Every test behind the verdicts (paired differences and interactions)"),
        ("table", _tests_view(tests)),
        (
            "p",
            "estimate and 95% cluster-bootstrap CI x100 (an exact floor where every "
            "replicate agreed and no item differed); p from a paired permutation test over "
            "templates (students for law), adjusted (p adj) within its family: the tests in "
            "the claims' ranges, and separately the descriptive ones. A test shows an effect "
            "when p adj < alpha. MDE = minimum detectable effect at power 0.8 with alpha "
            "shared by the family; underpowered when it exceeds the region of practical "
            "equivalence or there is no standard error.",
        ),  # fmt: skip
        ("pre", "the rules", rules_text),
    ]


def _contrast_blocks(contrasts: pd.DataFrame) -> list[Block]:
    if contrasts.empty:
        return []
    return [
        ("h2", "Named contrasts (pre-registered; one Holm family)"),
        (
            "p",
            "The contrasts named in the pre-registration before the data (numbered as "
            "there): ambiguous BBQ bias x100 per model that passes the validity gate for the "
            "rules' readout, paired on the same items (6: the last feedback round against "
            "round 0 of the same condition; 9: the S1 effect in the larger minus the smaller "
            "model of one family, on the templates both answered; 7: law-school parity and "
            "its changes, on the same students). CIs and p as in the table above, with the "
            "rules' bootstrap and permutations; p adj is Holm over every test of its family (the "
            "named contrasts; part 8's system-prompt comparison is a family of its own: "
            "baseline and S1 without a system prompt against the same condition with the "
            "template's default, and the S1 effect without minus with). "
            "Unknown rate: the share of ambiguous answers that are 'cannot be determined' "
            "under the condition / its reference. Winogender (contrast 8) is in its own "
            "tables.",
        ),
        ("table", _tests_view(contrasts)),
    ]


def _tests_view(tests: pd.DataFrame) -> pd.DataFrame:
    """The tests with CIs and p formatted; the contrast table's extra columns kept."""
    if tests.empty:
        return tests
    keys = ("hypothesis", "holm family", "contrast", "test", "range")
    first = {k: tests[k] for k in keys if k in tests}
    extra = {k: tests[k] for k in ("unknown rate (condition / reference)",) if k in tests}
    return pd.DataFrame(first | {
        "estimate x100 [95% CI]": fmt_ci_column(tests, "estimate", "ci_lo", "ci_hi", 100),
        "p": tests["p"].map(lambda x: f"{x:.3g}"),
        "p adj": tests["p_adj"].map(lambda x: f"{x:.3g}"),
        "family": tests["family_size"], "MDE x100": (tests["mde"] * 100).round(1),
        "underpowered": tests["underpowered"], "n items": tests["n_items"],
    } | extra | {"outcome": tests["outcome"]})  # fmt: skip


def _study_blocks(store, models, verdict_blocks, bias_variant, reference, study,
                  unparseable) -> list[Block]:  # fmt: skip
    named = (" (BBQ's reference analysis)" if bias_variant == "bbq"
             else " (a named alternative; see methodology.md section 5)")  # fmt: skip
    return [
        ("h1", "selfcorrect study report"),
        *manifest_blocks(store),
        ("h2", "Cost per model and part (wall time summed over resumed runs, peak memory)"),
        ("table", cost_table(store)),
        ("h2", "Model metadata (parameters, family, chat or base, alignment, weights)"),
        ("table", model_table(models)),
        *verdict_blocks,
        (
            "p",
            f"BBQ bias score definition: '{bias_variant}'{named}; unparseable answers: "
            f"'{unparseable}'; paired differences against '{reference}'.",
        ),  # fmt: skip
        *study,
    ]


def _write_study_files(store, out, blocks, csvs: dict[str, pd.DataFrame],
                       outcomes) -> list[Path]:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    files = write_pages(blocks, out)
    faults.point("report")
    for name, df in csvs.items():
        df.to_csv(out / f"{name}.csv", index=False)
        files.append(out / f"{name}.csv")
    manifest = out / "manifest.json"
    manifest.write_text(json.dumps(store.runs(), indent=2), encoding="utf-8")
    files.append(manifest)
    if not outcomes.empty:
        path = out / "outcomes.csv"
        outcomes.drop(columns=["probs"]).to_csv(path, index=False)
        files.append(path)
    return files


@dataclass
class ReportOptions:
    n_boot: int = 1000
    seed: int = 0
    reference: str = "baseline"
    bias_variant: str = "bbq"
    unparseable: str = "drop"
    rules: str | Path | None = None


def _benchmarks(store, outcomes, kits, models, out, opt) -> tuple[dict, list, list, dict]:
    """Each benchmark's tables, folder and part of the study page, and its answers per item
    for the verdicts."""
    tables, files, study, items = {}, [], [], {}
    for bench in sorted(outcomes["benchmark"].unique()) if not outcomes.empty else []:
        kit = kits[bench]
        part = outcomes[outcomes["benchmark"] == bench]
        bt = kit_tables(kit, part, opt.n_boot, opt.seed, opt.reference,
                        bias_variant=opt.bias_variant, unparseable=opt.unparseable)  # fmt: skip
        got, body = write_benchmark(
            bt, out / bench, f"selfcorrect report: {bench}", kit.section,
            manifest_blocks(store), transcript_blocks(store, bench), models,
        )  # fmt: skip
        files += got
        study += [("h1", f"Benchmark: {bench}")]
        study += [("img", f"{bench}/{b[1]}") if b[0] == "img" else b for b in body]
        tables.update({f"{bench}_{k}": v for k, v in bt.items()})
        if kit.verdict_items is not None:
            items[bench] = kit.verdict_items(part)
    return tables, files, study, items


def report_dir(directory: str | Path, kits: Mapping[str, Kit], out: str | Path | None = None,
               options: ReportOptions | None = None) -> Report:  # fmt: skip
    """Recompute every metric from the store (opened read-only) and write the report files
    into `out` (default: the results directory's report/), with the verdicts by the rules."""
    opt = options or ReportOptions()
    rules, digest = load_rules(opt.rules)
    store = Store(directory, read_only=True)
    try:
        outcomes = store.outcomes()
        models = store.models()
        out = Path(out) if out is not None else Path(directory) / "report"
        tables, files, study, items = _benchmarks(store, outcomes, kits, models, out, opt)
        inputs = Inputs(items.get("bbq", pd.DataFrame()), tables.get("bbq_gate", pd.DataFrame()),
                        items.get("law", pd.DataFrame()),
                        {k: tables[f"winogender_{k}"] for k in ("summary", "paired")
                         if f"winogender_{k}" in tables},
                        opt.bias_variant, opt.unparseable)  # fmt: skip
        verdict, tests = judge(inputs, models, rules)
        contrasts = named_contrasts(inputs, models, rules)
        status = rules_status(store, digest)
        verdict.insert(4, "status", "pre-registered" if status == "pre-registered"
                       else "exploratory")  # fmt: skip
        tables["verdicts"], tables["verdict_tests"] = verdict, tests
        tables["contrasts"] = contrasts
        text = Path(opt.rules or default_rules_path()).read_text(encoding="utf-8")
        judged = _verdict_blocks(verdict, tests, text, digest, status, rules_record(store, digest))
        blocks = _study_blocks(store, models, judged + _contrast_blocks(contrasts),
                               opt.bias_variant, opt.reference, study, opt.unparseable)  # fmt: skip
        files += _write_study_files(store, out, blocks,
                                    {"verdicts": verdict, "verdict_tests": tests,
                                     "contrasts": contrasts}, outcomes)  # fmt: skip
        return Report(Path(directory), tables, files)
    finally:
        store.close()
