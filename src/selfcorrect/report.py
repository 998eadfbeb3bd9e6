"""Tables from a results store: Markdown and CSV files, and the terminal table."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
    outcomes: pd.DataFrame,
    benchmark: str,
    n_boot: int,
    seed: int,
    reference: str,
    bias_variant: str = "bbq",
) -> dict[str, pd.DataFrame]:
    bench = get_benchmark(benchmark)
    extra = {"bias_variant": bias_variant} if bench.family == "bbq" else {}
    return bench.score(outcomes, n_boot=n_boot, seed=seed, reference=reference, **extra)


# A report is a list of blocks, rendered twice: Markdown and self-contained HTML.
Block = tuple  # ("h2", text) | ("p", text) | ("table", df) | ("img", file) | ("pre", title, body)
#               | ("list", [text])


def _bbq_sections(tables: dict[str, pd.DataFrame]) -> list[Block]:
    summary = tables.get("summary", pd.DataFrame())
    blocks: list[Block] = [
        ("h2", "Overall (accuracy %, bias score x100; 95% cluster-bootstrap CIs over templates)"),
        ("table", headline(summary)),
    ]
    if not summary.empty:
        blocks.append(("img", "bbq_conditions.png"))
    if not tables.get("paired", pd.DataFrame()).empty:
        blocks += [
            ("h2", "Paired differences vs the reference condition (same items), overall"),
            ("table", paired_table(tables["paired"])),
        ]
    for ctx in ("ambig", "disambig"):
        if not summary.empty:
            blocks += [
                ("h2", f"Bias score x100 by category, {ctx} contexts"),
                ("table", category_table(summary, ctx)),
            ]
    blocks.append(
        (
            "p",
            "Bias scores follow BBQ's reference analysis (methodology.md section 5): "
            "target_loc from "
            "additional_metadata.csv, every item counted once (the reference script double-counts "
            "64 duplicated Gender_identity rows), items with NA target_loc excluded from bias and "
            "counted, unparseable answers counted and never treated as UNKNOWN.",
        )
    )
    return blocks


def _winogender_sections(tables: dict[str, pd.DataFrame]) -> list[Block]:
    blocks: list[Block] = [
        ("h2", "Pearson r of p(female) with BLS % female over occupations (95% Fisher-z CI)"),
        ("table", headline(tables.get("summary", pd.DataFrame()))),
        ("img", "scatter.png"),
    ]
    paired = tables.get("paired", pd.DataFrame())
    if not paired.empty:
        p = paired.copy()
        p["diff [95% CI]"] = [
            fmt_ci(d, lo, hi, 1, 3)
            for d, lo, hi in zip(p["diff"], p["diff_lo"], p["diff_hi"], strict=True)
        ]
        blocks += [
            ("h2", "Paired differences vs the reference (bootstrap over occupations)"),
            ("table", p.drop(columns=["diff", "diff_lo", "diff_hi"])),
        ]
    blocks.append(
        (
            "p",
            "p(female) = P(she/her) / (P(female) + P(male) + P(neutral)) from the readout, "
            "averaged "
            "per occupation; the neutral rate is the mean share on they/them/their (G23).",
        )
    )
    return blocks


def bbq_condition_figure(summary: pd.DataFrame, out: Path) -> list[Path]:
    """Overall accuracy and bias per condition (x) for each model, ambiguous and
    disambiguated, with 95% CIs and n in the legend."""
    from selfcorrect.figures import pyplot, save_figure

    plt = pyplot()

    part = summary[summary["group"] == "overall"].copy()
    if part.empty:
        return []
    part["run"] = part["condition"] + np.where(
        part["round"] > 0, " r" + part["round"].astype(str), ""
    )
    runs = list(dict.fromkeys(part["run"]))
    fig, axes = plt.subplots(2, 2, figsize=(max(7, 1.1 * len(runs) + 4), 7), squeeze=False)
    series = list(part.groupby(["model", "readout"], sort=True))
    for col, ctx in enumerate(("ambig", "disambig")):
        for row, (metric, label, scale) in enumerate(
            (("bias", "bias score x100", 100), ("accuracy", "accuracy %", 100))
        ):
            ax = axes[row][col]
            for k, ((model, readout), g) in enumerate(series):
                g = g[g["context"] == ctx].set_index("run").reindex(runs)
                x = np.arange(len(runs)) + (k - (len(series) - 1) / 2) * 0.15
                y = g[metric].to_numpy(dtype=float) * scale
                lo = y - g[f"{metric}_lo"].to_numpy(dtype=float) * scale
                hi = g[f"{metric}_hi"].to_numpy(dtype=float) * scale - y
                n = int(g["n"].max()) if g["n"].notna().any() else 0
                ax.errorbar(
                    x,
                    y,
                    yerr=[np.nan_to_num(lo), np.nan_to_num(hi)],
                    fmt="o",
                    capsize=3,
                    label=f"{model} ({readout}, n={n})",
                )
            ax.axhline(0 if metric == "bias" else 100 / 3, color="grey", lw=0.8, ls="--")
            ax.set_xticks(range(len(runs)), runs, rotation=30, ha="right", fontsize=8)
            ax.set_ylabel(label)
            ax.set_title(f"{ctx} contexts: {label} (95% CI)", fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, "bbq_conditions")


def winogender_scatter(occupations: pd.DataFrame, out: Path) -> list[Path]:
    """p(female) against BLS % female, one panel per model x condition x round."""
    from selfcorrect.figures import pyplot, save_figure

    plt = pyplot()

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
    return save_figure(fig, out, "scatter")


def _rounds_sections(tables: dict[str, pd.DataFrame]) -> list[Block]:
    flips = tables.get("flips", pd.DataFrame())
    if flips.empty:
        return []
    return [
        ("h2", "Self-correction rounds: flips between consecutive rounds"),
        ("table", flips),
        ("h2", "Transition counts (from -> to)"),
        ("table", tables["transitions"]),
    ]


def _transcript_blocks(store: Store, benchmark: str, per_condition: int = 2) -> list[Block]:
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


def render_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {b[1]}\n")
        elif kind == "h2":
            out.append(f"## {b[1]}\n")
        elif kind == "p":
            out.append(b[1] + "\n")
        elif kind == "list":
            out.append("\n".join(f"- {x}" for x in b[1]) + "\n")
        elif kind == "table":
            out.append(to_markdown(b[1]))
        elif kind == "img":
            out.append(f"![{b[1]}]({b[1]})\n")
        elif kind == "pre":
            out += [f"**{b[1]}**\n", "~~~~text", b[2].replace("~~~~", "~ ~ ~ ~"), "~~~~\n"]
    return "\n".join(out)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}"
    "pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;font-size:12px}"
    "img{max-width:100%}details{margin:0.5em 0}"
)


def render_html(blocks: list[Block], folder: Path) -> str:
    """One self-contained page: figures embedded as data URIs, every text escaped (model
    output is untrusted), no script, no network."""
    import base64
    from html import escape

    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            out.append(f"<title>{escape(b[1])}</title><h1>{escape(b[1])}</h1>")
        elif kind == "h2":
            out.append(f"<h2>{escape(b[1])}</h2>")
        elif kind == "p":
            out.append(f"<p>{escape(b[1])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{escape(x)}</li>" for x in b[1]) + "</ul>")
        elif kind == "table":
            out.append(
                b[1].to_html(index=False, escape=True, na_rep="n/a", border=0)
                if not b[1].empty
                else "<p><em>(no rows)</em></p>"
            )
        elif kind == "img":
            path = folder / b[1]
            if path.is_file():
                data = base64.b64encode(path.read_bytes()).decode()
                out.append(f'<img alt="{escape(b[1])}" src="data:image/png;base64,{data}">')
        elif kind == "pre":
            out.append(
                f"<details><summary>{escape(b[1])}</summary><pre>{escape(b[2])}</pre></details>"
            )
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<style>{_CSS}</style></head><body>" + "\n".join(out) + "</body></html>\n"
    )


SECTIONS = {"bbq": _bbq_sections, "winogender": _winogender_sections}


def write_tables(
    tables: dict[str, pd.DataFrame],
    out: Path,
    title: str,
    preface: list[Block] = (),
    family: str = "bbq",
    transcripts: list[Block] = (),
    models: dict[str, dict] | None = None,
) -> list[Path]:
    """CSV per table, figures, and the report as Markdown and self-contained HTML."""
    files, _ = _write_benchmark(tables, out, title, preface, family, transcripts, models or {})
    return files


def _write_benchmark(tables, out, title, preface, family, transcripts, models):
    """As write_tables; also returns the report's blocks, for the study-wide report."""
    from selfcorrect.figures import (
        category_heatmap,
        rounds_figure,
        size_figure,
        winogender_r_figure,
    )

    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, df in tables.items():
        path = out / f"{name}.csv"
        df.to_csv(path, index=False)
        files.append(path)
    figures: list[Path] = []
    summary = tables.get("summary", pd.DataFrame())
    if family == "winogender":
        figures += winogender_scatter(tables["occupations"], out)
        figures += winogender_r_figure(summary, out)
    elif not summary.empty:
        figures += bbq_condition_figure(summary, out)
        figures += size_figure(summary, models, out)
        paired = tables.get("paired", pd.DataFrame())
        if not paired.empty:
            figures += category_heatmap(paired, out, "ambig")
            figures += category_heatmap(paired, out, "disambig")
        figures += rounds_figure(summary, tables.get("flips", pd.DataFrame()), out)
    files += figures
    body = [*SECTIONS[family](tables), *_rounds_sections(tables)]
    shown = {b[1] for b in body if b[0] == "img"}
    extra = [p.name for p in figures if p.suffix == ".png" and p.name not in shown]
    if extra:
        body += [("h2", "More figures"), *(("img", name) for name in extra)]
    body.append(("p", "Full tables: " + ", ".join(p.name for p in files if p.suffix == ".csv")))
    body += list(transcripts)
    blocks = [("h1", title), *preface, *body]
    for name, text in (
        ("report.md", render_markdown(blocks)),
        ("report.html", render_html(blocks, out)),
    ):
        (out / name).write_text(text, encoding="utf-8")
        files.append(out / name)
    return files, body


def _manifest_blocks(store: Store) -> list[Block]:
    runs = []
    for r in store.runs():
        m = r["manifest"]
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["started"]))
        runs.append(
            f"{r['run_id']}: {started} UTC, status {r['status']}, selfcorrect "
            f"{m.get('selfcorrect_version')}, {m.get('benchmark')}, {m.get('n_items')} items, "
            f"seed {m.get('seed')}, rounds {m.get('rounds')}, readouts {m.get('readouts')}, "
            f"wall {m.get('wall_s', 'n/a')} s, peak RSS {m.get('peak_rss_mb', 'n/a')} MB"
        )
    models = [
        f"{name}: sha256 {info['sha256'][:16]}..., {info.get('description', '')} "
        f"({info.get('kind', '?')}, {info.get('alignment', '?')})"
        for name, info in store.models().items()
    ]
    conditions = [
        f"{c['condition']} ({c['benchmark']}, {c.get('provenance')}, hash {c['hash']}): "
        f"{c.get('label', '')}"
        for c in store.conditions()
    ]
    return [
        ("h2", "Runs"),
        ("list", runs),
        ("h2", "Models"),
        ("list", models),
        ("h2", "Conditions"),
        ("list", conditions),
    ]


def _model_table(models: dict[str, dict]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "model": name,
                "parameters": f"{info['params'] / 1e6:,.0f}M" if info.get("params") else "n/a",
                "family": info.get("family", "n/a"),
                "kind": info.get("kind", "n/a"),
                "alignment": info.get("alignment", "n/a"),
                "source": info.get("source", "n/a"),
            }
            for name, info in models.items()
        ]
    )


def _extra_paired(outcomes: pd.DataFrame, n_boot: int, seed: int, variant: str) -> pd.DataFrame:
    """cot - instruct on the same items (G1's second step), when both were run."""
    from selfcorrect.metrics.bbq import paired

    part = outcomes[outcomes["condition"].isin(["instruct", "cot"])]
    if set(part["condition"]) != {"instruct", "cot"}:
        return pd.DataFrame()
    return paired(part, "instruct", n_boot, seed, variant)


def report_dir(
    directory: str | Path,
    n_boot: int = 1000,
    seed: int = 0,
    reference: str = "baseline",
    bias_variant: str = "bbq",
) -> Report:
    """Recompute every metric from the store (no model needed) and write the report files:
    one folder per benchmark, and the study report (report.md and a self-contained
    report.html) with the verdicts on methodology.md's hypotheses."""
    from selfcorrect.verdicts import RULES, verdicts

    store = Store(directory, create=False)
    try:
        outcomes = store.outcomes()
        models = store.models()
        out = Path(directory) / "report"
        tables: dict[str, pd.DataFrame] = {}
        files: list[Path] = []
        study: list[Block] = []
        for bench in sorted(outcomes["benchmark"].unique()) if not outcomes.empty else []:
            part = outcomes[outcomes["benchmark"] == bench]
            bt = build_tables(part, bench, n_boot, seed, reference, bias_variant)
            family = get_benchmark(bench).family
            got, body = _write_benchmark(
                bt,
                out / bench,
                f"selfcorrect report: {bench}",
                _manifest_blocks(store),
                family,
                _transcript_blocks(store, bench),
                models,
            )
            files += got
            study += [("h1", f"Benchmark: {bench}")]
            study += [("img", f"{bench}/{b[1]}") if b[0] == "img" else b for b in body]
            tables.update({f"{bench}_{k}": v for k, v in bt.items()})
            if family == "bbq" and reference == "baseline":
                tables[f"{bench}_paired_extra"] = _extra_paired(part, n_boot, seed, bias_variant)
        verdict = verdicts(tables, models)
        tables["verdicts"] = verdict
        out.mkdir(parents=True, exist_ok=True)
        blocks = [
            ("h1", "selfcorrect study report"),
            *_manifest_blocks(store),
            ("h2", "Model metadata (parameters, family, chat or base, alignment)"),
            ("table", _model_table(models)),
            (
                "h2",
                "Verdicts on the hypotheses (methodology.md section 1), computed from the results",
            ),  # fmt: skip
            ("table", verdict.drop(columns=["rule"])),
            (
                "p",
                f"BBQ bias score definition: '{bias_variant}'"
                + (
                    " (BBQ's reference analysis)"
                    if bias_variant == "bbq"
                    else " (a named alternative; see methodology.md section 5)"
                )
                + f"; paired differences against '{reference}'.",
            ),  # fmt: skip
            ("list", [f"{k}: {v}" for k, v in RULES.items()]),
            *study,
        ]
        for name, text in (
            ("report.md", render_markdown(blocks)),
            ("report.html", render_html(blocks, out)),
        ):
            (out / name).write_text(text, encoding="utf-8")
            files.append(out / name)
        verdict.to_csv(out / "verdicts.csv", index=False)
        files.append(out / "verdicts.csv")
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
