"""Tables from a results store: Markdown and CSV files, and the terminal table."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from selfcorrect.benchmarks import get_benchmark
from selfcorrect.store import Store


def fmt_ci(value: float, lo: float, hi: float, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    core = f"{value * scale:.{digits}f}"
    if lo is None or math.isnan(lo) or math.isnan(hi):
        return core
    return f"{core} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


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
    cols = [
        "model",
        "readout",
        "round",
        "condition",
        "reference",
        "context",
        "metric",
        "n_pairs",
        "diff (x100)",
    ]
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


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


@dataclass
class Report:
    directory: Path
    tables: dict[str, pd.DataFrame]
    files: list[Path]


def build_tables(
    outcomes: pd.DataFrame, benchmark: str, n_boot: int, seed: int, reference: str
) -> dict[str, pd.DataFrame]:
    return get_benchmark(benchmark).score(outcomes, n_boot=n_boot, seed=seed, reference=reference)


def write_tables(
    tables: dict[str, pd.DataFrame], out: Path, title: str, preface: str = ""
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, df in tables.items():
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        files.append(path)
    summary = tables.get("summary", pd.DataFrame())
    md = [f"# {title}\n", preface]
    md += [
        "## Overall (accuracy %, bias score x100; 95% cluster-bootstrap CIs over templates)\n",
        to_markdown(headline(summary)),
    ]
    if not tables.get("paired", pd.DataFrame()).empty:
        md += [
            "## Paired differences vs the reference condition (same items), overall\n",
            to_markdown(paired_table(tables["paired"])),
        ]
    for ctx in ("ambig", "disambig"):
        if not summary.empty:
            md += [
                f"## Bias score x100 by category, {ctx} contexts\n",
                to_markdown(category_table(summary, ctx)),
            ]
    md.append(
        "\nBias scores follow BBQ's reference analysis (methodology.md section 5): target_loc from "
        "additional_metadata.csv, every item counted once (the reference script double-counts "
        "64 duplicated Gender_identity rows), items with NA target_loc excluded from bias and "
        "counted, unparseable answers counted and never treated as UNKNOWN. Full tables: "
        + ", ".join(p.name for p in files)
        + ".\n"
    )
    path = out / "report.md"
    path.write_text("\n".join(md), encoding="utf-8")
    files.append(path)
    return files


def _manifest_md(store: Store) -> str:
    lines = ["## Runs\n"]
    for r in store.runs():
        m = r["manifest"]
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started"]))
        lines.append(
            f"- `{r['run_id']}` {started} UTC, status **{r['status']}**, selfcorrect "
            f"{m.get('selfcorrect_version')}, {m.get('n_items')} items, seed {m.get('seed')}, "
            f"wall {m.get('wall_s', 'n/a')} s, peak RSS {m.get('peak_rss_mb', 'n/a')} MB"
        )
    lines.append("\n## Models\n")
    for name, info in store.models().items():
        lines.append(
            f"- `{name}`: sha256 `{info['sha256'][:16]}...`, {info.get('description', '')}"
            f" ({info.get('kind', '?')}, {info.get('alignment', '?')})"
        )
    lines.append("\n## Conditions\n")
    for c in store.conditions():
        lines.append(
            f"- `{c['condition']}` ({c['benchmark']}, {c.get('provenance')}, hash "
            f"`{c['hash']}`): {c.get('label', '')}"
        )
    return "\n".join(lines) + "\n"


def report_dir(
    directory: str | Path, n_boot: int = 1000, seed: int = 0, reference: str = "baseline"
) -> Report:
    """Recompute every metric from the store (no model needed) and write the report files."""
    store = Store(directory, create=False)
    try:
        outcomes = store.outcomes()
        out = Path(directory) / "report"
        tables: dict[str, pd.DataFrame] = {}
        files: list[Path] = []
        for bench in sorted(outcomes["benchmark"].unique()) if not outcomes.empty else []:
            bt = build_tables(
                outcomes[outcomes["benchmark"] == bench], bench, n_boot, seed, reference
            )
            files += write_tables(
                bt, out / bench, f"selfcorrect report: {bench}", _manifest_md(store)
            )
            tables.update({f"{bench}_{k}": v for k, v in bt.items()})
        out.mkdir(parents=True, exist_ok=True)
        manifest = out / "manifest.json"
        manifest.write_text(json.dumps(store.runs(), indent=2), encoding="utf-8")
        files.append(manifest)
        if not outcomes.empty:
            path = out / "outcomes.csv"
            outcomes.drop(columns=["probs"]).to_csv(path, index=False)
            files.append(path)
        return Report(Path(directory), tables, files)
    finally:
        store.close()
