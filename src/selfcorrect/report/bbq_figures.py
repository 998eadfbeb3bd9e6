"""BBQ figures (PNG and SVG, readable in print): accuracy and bias per condition, against
model size, the per-category change from baseline, and self-correction across rounds."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd

from selfcorrect.report.figures import error_bars, legend_below, pyplot, save_figure


def condition_figure(summary: pd.DataFrame, out: Path) -> list[Path]:
    """Overall accuracy and bias per condition (x) for each model, ambiguous and
    disambiguated, with 95% CIs and n in the legend; round 0 under one readout (the rounds
    and the readouts have figures of their own, and every series more makes this one
    unreadable)."""
    plt = pyplot()

    part = summary[(summary["group"] == "overall") & (summary["round"] == 0)].copy()
    if part.empty:
        return []
    readout = main_readout(part)
    part = part[part["readout"] == readout]
    runs = list(dict.fromkeys(part["condition"]))
    fig, axes = plt.subplots(2, 2, figsize=(max(7, 1.1 * len(runs) + 4), 7), squeeze=False)
    series = list(part.groupby("model", sort=True))
    for col, ctx in enumerate(("ambig", "disambig")):
        for row, (metric, label, scale) in enumerate(
            (("bias", "bias score x100", 100), ("accuracy", "accuracy %", 100))
        ):
            ax = axes[row][col]
            for k, (model, g) in enumerate(series):
                g = g[g["context"] == ctx].set_index("condition").reindex(runs)
                x = np.arange(len(runs)) + (k - (len(series) - 1) / 2) * 0.15
                y = g[metric].to_numpy(dtype=float) * scale
                err = error_bars(y, g[f"{metric}_lo"], g[f"{metric}_hi"], scale)
                n = int(g["n"].max()) if g["n"].notna().any() else 0
                ax.errorbar(
                    x,
                    y,
                    yerr=err,
                    fmt="o",
                    capsize=3,
                    label=f"{model} (n={n})",
                )
            ax.axhline(0 if metric == "bias" else 100 / 3, color="grey", lw=0.8, ls="--")
            ax.set_xticks(range(len(runs)), runs, rotation=30, ha="right", fontsize=8)
            ax.set_ylabel(label)
            ax.set_title(f"{ctx} contexts: {label}, round 0 ({readout} readout, 95% CI)",
                         fontsize=9)  # fmt: skip
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, "bbq_conditions")


def main_readout(part: pd.DataFrame) -> str:
    """The readout that the most model x condition pairs were read with (a plain run has one;
    the study's is the content readout), ties broken by name."""
    pairs = part.drop_duplicates(["readout", "model", "condition"]).groupby("readout").size()
    return str(pairs.sort_index().idxmax())


def size_figure(summary: pd.DataFrame, models: dict[str, dict], out: Path) -> list[Path]:
    """Bias and accuracy (overall, round 0) against log10 parameters, one line per
    condition, under one readout (a line through several readouts' answers would join
    different measurements); only models whose parameter count is known."""
    part = summary[(summary["group"] == "overall") & (summary["round"] == 0)].copy()
    if part.empty:
        return []
    readout = main_readout(part)
    part = part[part["readout"] == readout]
    part["params"] = [float(models.get(m, {}).get("params") or math.nan) for m in part["model"]]
    part = part[part["params"].notna()]
    if part["model"].nunique() < 2:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), squeeze=False)
    conds = list(dict.fromkeys(part["condition"]))
    sizes = part.groupby("model")["params"].first().sort_values()
    span = max(0.2, float(np.log10(sizes.max()) - np.log10(sizes.min())))
    step = 0.6 * span / max(1, len(sizes) - 1) / max(1, len(conds))  # dodge within a model
    colors = plt.get_cmap("tab20" if len(conds) > 10 else "tab10").colors  # one per condition
    for col, ctx in enumerate(("ambig", "disambig")):
        rows = (("bias", "bias score x100"), ("accuracy", "accuracy %"))
        for row, (metric, label) in enumerate(rows):
            ax = axes[row][col]
            for k, cond in enumerate(conds):
                g = part[(part["condition"] == cond) & (part["context"] == ctx)]
                g = g.sort_values("params")
                x = np.log10(g["params"].to_numpy()) + (k - (len(conds) - 1) / 2) * step
                y = g[metric].to_numpy(float) * 100
                err = error_bars(y, g[f"{metric}_lo"], g[f"{metric}_hi"], 100)
                n = int(g["n"].max()) if len(g) else 0
                ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, ms=4, lw=1,
                            color=colors[k % len(colors)],
                            label=f"{cond} (n={n}/model)")  # fmt: skip
            ax.axhline(0 if metric == "bias" else 100 / 3, color="grey", lw=0.8, ls="--")
            ax.set_xticks(
                np.log10(sizes.to_numpy()),
                # whole names, wrapped: a cut one hides which Qwen model is which
                [f"{v / 1e6:,.0f}M\n" + "\n".join(textwrap.wrap(m, 14)) for m, v in sizes.items()],
                fontsize=7,
            )
            ax.set_xlabel("model size (parameters, log scale)")
            ax.set_ylabel(label)
            ax.set_title(f"{ctx} contexts: {label} vs size ({readout} readout, 95% CI)",
                         fontsize=9)  # fmt: skip
            ax.grid(alpha=0.3)
    legend_below(fig)
    return save_figure(fig, out, "bbq_size")


def category_heatmap(paired: pd.DataFrame, out: Path, context: str = "ambig") -> list[Path]:
    """condition - baseline bias (x100) per category (rows) and condition (columns), one panel
    per model, round 0, under one readout (a cell must not mix readouts); cells whose paired
    CI excludes zero are marked with *."""
    p = paired[(paired["metric"] == "bias") & (paired["context"] == context)
               & (paired["round"] == 0) & (paired["group"] != "overall")]  # fmt: skip
    if p.empty:
        return []
    readout = main_readout(p)
    p = p[p["readout"] == readout].assign(sig=lambda d: (d["diff_lo"] > 0) | (d["diff_hi"] < 0))
    grid = p.pivot_table(index=["model", "group"], columns="condition", values="diff",
                         aggfunc="first") * 100  # fmt: skip
    sig = p.pivot_table(index=["model", "group"], columns="condition", values="sig",
                        aggfunc="first").reindex_like(grid)  # fmt: skip
    models = list(dict.fromkeys(grid.index.get_level_values("model")))
    groups = sorted(set(grid.index.get_level_values("group")))
    plt = pyplot()
    fig, axes = plt.subplots(
        len(models),
        1,
        squeeze=False,
        figsize=(max(6, 0.75 * grid.shape[1] + 4), len(models) * (0.3 * len(groups) + 1.6) + 0.6),
    )
    lim = max(5.0, float(np.nanmax(np.abs(grid.to_numpy(float)))))
    for ax, model in zip(axes[:, 0], models, strict=True):
        g = grid.loc[model].reindex(groups)
        s = sig.loc[model].reindex(groups)
        im = ax.imshow(g.to_numpy(float), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                v = g.iat[i, j]
                if v == v:
                    star = "*" if s.iat[i, j] is True or s.iat[i, j] == 1 else ""
                    ax.text(j, i, f"{v:.0f}{star}", ha="center", va="center", fontsize=6)
        ax.set_xticks(range(g.shape[1]), g.columns, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(g.shape[0]), g.index, fontsize=7)
        ax.set_title(model, fontsize=8)
        fig.colorbar(im, ax=ax, label="bias change x100", fraction=0.03)
    n = int(p["n_pairs"].median())
    fig.suptitle(f"{context} contexts: bias change from baseline per category, round 0, "
                 f"{readout} readout (median n = {n} paired items per cell; * paired 95% CI "
                 "excludes 0)", fontsize=9)  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, out, f"bbq_heatmap_{context}")


def rounds_figure(summary: pd.DataFrame, flips: pd.DataFrame, out: Path) -> list[Path]:
    """Accuracy and bias (ambiguous and disambiguated) per round for every model x
    condition with rounds, and the transitions between consecutive rounds as bars."""
    s = summary[summary["group"] == "overall"]
    runs = s.groupby(["model", "condition", "readout"])["round"].nunique()
    runs = runs[runs > 1]
    if runs.empty:
        return []
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), squeeze=False)
    for key in runs.index:
        g = s[(s["model"] == key[0]) & (s["condition"] == key[1]) & (s["readout"] == key[2])]
        for ax, (ctx, metric, label) in zip(
            axes[0][:2], (("ambig", "bias", "ambiguous bias x100"),
                          ("disambig", "accuracy", "disambiguated accuracy %")), strict=True,
        ):  # fmt: skip
            h = g[g["context"] == ctx].sort_values("round")
            y = h[metric].to_numpy(float) * 100
            ax.errorbar(h["round"], y,
                        yerr=error_bars(y, h[f"{metric}_lo"], h[f"{metric}_hi"], 100),
                        fmt="o-", capsize=3, ms=4, label=f"{key[0][:24]} / {key[1]}")  # fmt: skip
            ax.set_xlabel("round (0 = first answer)")
            ax.set_ylabel(label)
            ax.set_title(f"{label} per round (95% CI)", fontsize=9)
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=6)
    ax = axes[0][2]
    kinds = ["wrong->correct", "correct->wrong", "biased->unbiased", "unbiased->biased",
             "answer->UNKNOWN", "UNKNOWN->answer", "readable->unreadable"]  # fmt: skip
    if not flips.empty:
        f = flips.copy()
        f["label"] = (f["model"].str.slice(0, 16) + " / " + f["condition"] + " r"
                      + f["from_round"].astype(str) + "->" + f["to_round"].astype(str))  # fmt: skip
        bottom = np.zeros(len(f))
        for kind in kinds:
            vals = f[kind].to_numpy(float)
            ax.barh(f["label"], vals, left=bottom, label=kind)
            bottom += vals
        ax.set_xlabel("items changing answer (count)")
        ax.tick_params(axis="y", labelsize=6)
        ax.legend(fontsize=6)
        ax.set_title(f"transitions between rounds (n = {int(f['n'].max())} items each)",
                     fontsize=9)  # fmt: skip
    fig.tight_layout()
    return save_figure(fig, out, "bbq_rounds")


def readout_figure(orders: pd.DataFrame, out: Path) -> list[Path]:
    """The readout comparison (orders.csv): ambiguous bias and accuracy per readout, read
    over every option order and in the original order only, baseline and S1 side by side,
    one column per model: how much the readout alone moves a conclusion."""
    part = orders[(orders["group"] == "overall") & (orders["round"] == 0)
                  & (orders["context"] == "ambig")
                  & orders["condition"].isin(["baseline", "instruct"])]  # fmt: skip
    if part.empty:
        return []
    part = part.assign(way=part["readout"] + np.where(part["orders"] == "combined",
                                                      " (all orders)", " (original)"))  # fmt: skip
    ways = sorted(part["way"].unique())
    models = sorted(part["model"].unique())
    plt = pyplot()
    fig, axes = plt.subplots(2, len(models), figsize=(max(6, 4.5 * len(models)), 7),
                             squeeze=False, sharey="row")  # fmt: skip
    for col, model in enumerate(models):
        for row, metric in enumerate(("bias", "accuracy")):
            ax = axes[row][col]
            for k, cond in enumerate(("baseline", "instruct")):
                g = part[(part["model"] == model) & (part["condition"] == cond)]
                g = g.set_index("way").reindex(ways)
                y = g[metric].to_numpy(float) * 100
                err = error_bars(y, g[f"{metric}_lo"], g[f"{metric}_hi"], 100)
                ax.errorbar(np.arange(len(ways)) + (k - 0.5) * 0.2, y, yerr=err, fmt="o",
                            capsize=3, label=cond)  # fmt: skip
            ax.axhline(0 if metric == "bias" else 100 / 3, color="grey", lw=0.8, ls="--")
            ax.set_xticks(range(len(ways)), ways, rotation=35, ha="right", fontsize=7)
            ax.set_title(f"{model[:28]}: ambiguous {metric} (95% CI)", fontsize=8)
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("bias score x100")
    axes[1][0].set_ylabel("accuracy %")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, "bbq_readouts")
