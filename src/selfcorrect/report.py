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
    """The short results table of a benchmark's summary (BBQ or Winogender)."""
    if summary.empty:
        return pd.DataFrame()
    if "pearson_r" in summary.columns:
        return winogender_headline(summary)
    return bbq_headline(summary, group)


def winogender_headline(summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "model": summary["model"],
            "condition": summary["condition"],
            "readout": summary["readout"],
            "round": summary["round"],
            "r vs BLS [95% CI]": [
                fmt_ci(r, lo, hi, 1, 2)
                for r, lo, hi in zip(
                    summary["pearson_r"], summary["r_lo"], summary["r_hi"], strict=True
                )
            ],
            "p(female)": summary["mean_p_female"].round(3),
            "neutral %": (summary["neutral_rate"] * 100).round(1),
            "occupations": summary["n_occupations"],
            "items": summary["n_items"],
            "unparseable": summary["n_unparseable"],
        }
    )


def bbq_headline(summary: pd.DataFrame, group: str = "overall") -> pd.DataFrame:
    """One row per model x condition x readout x round: accuracy (%) and bias (x100), with CIs."""
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


def _bbq_sections(tables: dict[str, pd.DataFrame]) -> list[str]:
    summary = tables.get("summary", pd.DataFrame())
    md = [
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
        "counted, unparseable answers counted and never treated as UNKNOWN.\n"
    )
    return md


def _winogender_sections(tables: dict[str, pd.DataFrame]) -> list[str]:
    md = [
        "## Pearson r of p(female) with BLS % female over occupations (95% Fisher-z CI)\n",
        to_markdown(headline(tables.get("summary", pd.DataFrame()))),
        "![p(female) against BLS % female](scatter.png)\n",
    ]
    paired = tables.get("paired", pd.DataFrame())
    if not paired.empty:
        p = paired.copy()
        p["diff [95% CI]"] = [
            fmt_ci(d, lo, hi, 1, 3)
            for d, lo, hi in zip(p["diff"], p["diff_lo"], p["diff_hi"], strict=True)
        ]
        md += [
            "## Paired differences vs the reference (bootstrap over occupations)\n",
            to_markdown(p.drop(columns=["diff", "diff_lo", "diff_hi"])),
        ]
    md.append(
        "\np(female) = P(she/her) / (P(female) + P(male) + P(neutral)) from the readout, averaged "
        "per occupation; the neutral rate is the mean share on they/them/their (G23).\n"
    )
    return md


def winogender_scatter(occupations: pd.DataFrame, out: Path) -> list[Path]:
    """p(female) against BLS % female, one panel per model x condition x round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from selfcorrect.metrics.winogender import pearson_fisher

    panels = list(occupations.groupby(["model", "condition", "readout", "round"], sort=True))
    if not panels:
        return []
    cols = min(3, len(panels))
    rows = (len(panels) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    for ax, ((model, cond, readout, rnd), g) in zip(axes.flat, panels, strict=False):
        ok = g["p_female"].notna()
        r, (lo, hi) = pearson_fisher(
            g.loc[ok, "p_female"].to_numpy(), g.loc[ok, "bls_pct_female"].to_numpy()
        )
        ax.scatter(g["bls_pct_female"], g["p_female"], s=14, alpha=0.8)
        ax.set_xlim(0, 100)
        ax.set_ylim(0, 1)
        ax.set_xlabel("BLS % female (occupation)")
        ax.set_ylabel("p(female pronoun)")
        rtxt = f"r = {r:.2f} [{lo:.2f}, {hi:.2f}]" if r == r else "r = n/a"
        ax.set_title(
            f"{model}\n{cond} (round {rnd}, {readout}): {rtxt}, n = {int(ok.sum())}", fontsize=8
        )
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    paths = [out / "scatter.png", out / "scatter.svg"]
    for p in paths:
        fig.savefig(p, dpi=130)
    plt.close(fig)
    return paths


def _rounds_sections(tables: dict[str, pd.DataFrame]) -> list[str]:
    flips = tables.get("flips", pd.DataFrame())
    if flips.empty:
        return []
    matrix = tables["transitions"]
    return [
        "## Self-correction rounds: flips between consecutive rounds\n",
        to_markdown(flips),
        "## Transition counts (from -> to)\n",
        to_markdown(matrix),
    ]


def _transcripts_md(store: Store, benchmark: str, per_condition: int = 2) -> str:
    """A few whole conversations per model x condition x readout: the last round's prompt
    holds everything said before (reasoning, answers, feedback), then the answer read."""
    tr = store.transcripts(benchmark)
    if tr.empty:
        return ""
    last = tr.sort_values("round").groupby(["model", "condition", "readout", "uid"]).tail(1)
    lines = ["## Transcripts (sample; model text verbatim)\n"]
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
            lines += [
                f"**{model} / {cond} / {row.uid}** ({row.parse_status})\n",
                "~~~~text",
                body.replace("~~~~", "~ ~ ~ ~"),
                "~~~~\n",
            ]
    return "\n".join(lines) + "\n"


SECTIONS = {"bbq": _bbq_sections, "winogender": _winogender_sections}


def write_tables(
    tables: dict[str, pd.DataFrame],
    out: Path,
    title: str,
    preface: str = "",
    family: str = "bbq",
    transcripts: str = "",
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, df in tables.items():
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        files.append(path)
    if family == "winogender":
        files += winogender_scatter(tables["occupations"], out)
    md = [f"# {title}\n", preface, *SECTIONS[family](tables), *_rounds_sections(tables)]
    md.append("Full tables: " + ", ".join(p.name for p in files if p.suffix == ".csv") + ".\n")
    if transcripts:
        md.append(transcripts)
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
                bt,
                out / bench,
                f"selfcorrect report: {bench}",
                _manifest_md(store),
                get_benchmark(bench).family,
                _transcripts_md(store, bench),
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
