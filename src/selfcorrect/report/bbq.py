"""BBQ in a report: the headline table (accuracy %, bias x100 with CIs), paired differences,
per-category tables, and the figures of report/bbq_figures.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from selfcorrect.metrics.format import fmt_ci
from selfcorrect.report import bbq_figures
from selfcorrect.report.render import Block
from selfcorrect.report.section import Section, Tables


def headline(summary: pd.DataFrame, group: str = "overall") -> pd.DataFrame:
    """One row per model x condition x readout x round: accuracy (%) and bias (x100), with CIs."""
    if summary.empty:
        return pd.DataFrame()
    part = summary[summary["group"] == group]
    rows = []
    for keys, g in part.groupby(["model", "condition", "readout", "round"], sort=False):
        row = dict(zip(["model", "condition", "readout", "round"], keys, strict=True))
        for ctx, tag in (("ambig", "amb"), ("disambig", "dis")):
            r = g[g["context"] == ctx]
            if r.empty:
                continue
            r = r.iloc[0]
            row[f"acc {tag} %"] = fmt_ci(r.accuracy, r.accuracy_lo, r.accuracy_hi, 100)
            row[f"bias {tag} x100"] = fmt_ci(r.bias, r.bias_lo, r.bias_hi, 100)
            row[f"n {tag}"] = int(r.n)
            row[f"unparseable {tag}"] = int(r.n_unparseable)
        rows.append(row)
    return pd.DataFrame(rows)


def paired_table(paired: pd.DataFrame, group: str = "overall") -> pd.DataFrame:
    if paired.empty:
        return pd.DataFrame()
    p = paired[paired["group"] == group].copy()
    p["diff (x100)"] = [
        fmt_ci(d, lo, hi, 100)
        for d, lo, hi in zip(p["diff"], p["diff_lo"], p["diff_hi"], strict=True)
    ]
    cols = ["model", "readout", "round", "condition", "reference", "context", "metric",
            "n_pairs", "diff (x100)"]  # fmt: skip
    return p[cols]


def category_table(summary: pd.DataFrame, context: str) -> pd.DataFrame:
    """Bias (x100) per group (rows) and model/condition (columns) for one context condition."""
    part = summary[summary["context"] == context].copy()
    if part.empty:
        return pd.DataFrame()
    part["cell"] = [
        fmt_ci(b, lo, hi, 100)
        for b, lo, hi in zip(part["bias"], part["bias_lo"], part["bias_hi"], strict=True)
    ]
    part["column"] = part["model"] + " / " + part["condition"] + " / r" + part["round"].astype(str)
    order = list(dict.fromkeys(part["group"]))
    table = part.pivot_table(index="group", columns="column", values="cell", aggfunc="first")
    return table.reindex(order).reset_index()


METHOD_NOTE = (
    "Bias scores follow BBQ's reference analysis (methodology.md section 5): target_loc from "
    "additional_metadata.csv, every item counted once (the reference script double-counts "
    "64 duplicated Gender_identity rows), items with NA target_loc excluded from bias and "
    "counted, unparseable answers counted and never treated as UNKNOWN."
)


def blocks(tables: Tables) -> list[Block]:
    summary = tables.get("summary", pd.DataFrame())
    out: list[Block] = [
        ("h2", "Overall (accuracy %, bias score x100; 95% cluster-bootstrap CIs over templates)"),
        ("table", headline(summary)),
    ]
    if not summary.empty:
        out.append(("img", "bbq_conditions.png"))
    if not tables.get("paired", pd.DataFrame()).empty:
        out += [
            ("h2", "Paired differences vs the reference condition (same items), overall"),
            ("table", paired_table(tables["paired"])),
        ]
    for ctx in ("ambig", "disambig"):
        if not summary.empty:
            out += [
                ("h2", f"Bias score x100 by category, {ctx} contexts"),
                ("table", category_table(summary, ctx)),
            ]
    out.append(("p", METHOD_NOTE))
    return out


def figures(tables: Tables, models: dict[str, dict], out: Path) -> list[Path]:
    summary = tables.get("summary", pd.DataFrame())
    if summary.empty:
        return []
    paths = bbq_figures.condition_figure(summary, out)
    paths += bbq_figures.size_figure(summary, models, out)
    paired = tables.get("paired", pd.DataFrame())
    if not paired.empty:
        paths += bbq_figures.category_heatmap(paired, out, "ambig")
        paths += bbq_figures.category_heatmap(paired, out, "disambig")
    paths += bbq_figures.rounds_figure(summary, tables.get("flips", pd.DataFrame()), out)
    return paths


SECTION = Section(headline=headline, blocks=blocks, figures=figures)
