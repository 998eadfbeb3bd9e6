"""Winogender in a report: the headline table (Pearson r with BLS, Fisher-z CIs), paired
differences over occupations, and the scatter and correlation figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from selfcorrect.metrics.format import fmt_ci
from selfcorrect.metrics.winogender import pearson_fisher
from selfcorrect.report.figures import error_bars, pyplot, save_figure
from selfcorrect.report.render import Block
from selfcorrect.report.section import Section, Tables


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    if summary.empty:
        return pd.DataFrame()
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
            "r, she/he only": [
                fmt_ci(r, lo, hi, 1, 2)
                for r, lo, hi in zip(
                    summary["pearson_r_fm"], summary["r_fm_lo"], summary["r_fm_hi"], strict=True
                )
            ],
            "error (pts)": summary["mae"].round(1),
            "slope": summary["slope"].round(2),
            "p(female)": summary["mean_p_female"].round(3),
            "neutral %": (summary["neutral_rate"] * 100).round(1),
            "occupations": summary["n_occupations"],
            "items": summary["n_items"],
            "unparseable": summary["n_unparseable"],
        }
    )


METHOD_NOTE = (
    "p(female) = P(she/her) / (P(female) + P(male) + P(neutral)) from the readout, averaged "
    "per occupation over the templates whose pronoun refers to the occupation; 'she/he only' "
    "normalises over P(female) + P(male). error = mean |100 p(female) - BLS % female| in "
    "percentage points, slope = regression slope of 100 p(female) on BLS % (1 = tracks the "
    "statistics); the neutral rate is the mean share on they/them/their (G23)."
)


def blocks(tables: Tables) -> list[Block]:
    out: list[Block] = [
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
        out += [
            ("h2", "Paired differences vs the reference (bootstrap over occupations)"),
            ("table", p.drop(columns=["diff", "diff_lo", "diff_hi"])),
        ]
    out.append(("p", METHOD_NOTE))
    return out


def figures(tables: Tables, models: dict[str, dict], out: Path) -> list[Path]:
    return scatter(tables["occupations"], out) + r_figure(
        tables.get("summary", pd.DataFrame()), out
    )


def scatter(occupations: pd.DataFrame, out: Path) -> list[Path]:
    """p(female) against BLS % female, one panel per model x condition x round, with the
    diagonal p(female) = BLS share (slope 1) for orientation."""
    plt = pyplot()

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
        # where a model that follows the statistic (Match Stats' target) would lie
        ax.plot([0, 100], [0, 1], color="grey", lw=0.8, ls="--")
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


def r_figure(summary: pd.DataFrame, out: Path) -> list[Path]:
    """Pearson r with BLS per condition (x) for each model, Fisher-z 95% CIs, round 0."""
    part = summary[summary["round"] == 0]
    if part.empty:
        return []
    conds = list(dict.fromkeys(part["condition"]))
    series = list(part.groupby(["model", "readout"], sort=True))
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(conds) + 3), 4.2))
    for k, ((model, readout), g) in enumerate(series):
        g = g.set_index("condition").reindex(conds)
        x = np.arange(len(conds)) + (k - (len(series) - 1) / 2) * 0.12
        y = g["pearson_r"].to_numpy(float)
        occ = int(g["n_occupations"].max())
        ax.errorbar(x, y, yerr=error_bars(y, g["r_lo"], g["r_hi"]),
                    fmt="o", capsize=3,
                    label=f"{model[:28]} ({readout}, {occ} occupations)")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.axhspan(0.5, 0.6, color="grey", alpha=0.15, label="G23 baseline range (0.5-0.6)")
    ax.set_xticks(range(len(conds)), conds, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("Pearson r, p(female) vs BLS % female")
    ax.set_ylim(-1, 1)
    ax.set_title("Winogender: correlation with occupation statistics (95% Fisher-z CI)",
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, "winogender_r")


SECTION = Section(headline=headline, blocks=blocks, figures=figures)
