"""Feedback rounds in a report, for any benchmark whose tables have them: flips and transition
counts between consecutive rounds, uncertainty per round (entropy, p(gold), calibration),
convergence, and a figure of entropy and p(gold) against round."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from selfcorrect.metrics.format import fmt_ci_column
from selfcorrect.report.figures import LINE_STYLES, error_bars, legend_below, pyplot, save_figure
from selfcorrect.report.render import Block
from selfcorrect.report.section import Tables

UNCERTAINTY_NOTE = (
    "Entropy of the answer distribution in nats (ln 3 = 1.10 for three equally likely "
    "options); p(gold) = the probability on the right answer; Brier = sum over options of "
    "(p - y)^2; ECE over 10 equal-width bins of the top probability. Convergence: the first "
    "round from which an item's answer no longer changes (its distribution: total variation "
    "at most 0.05); wavering = the answer changes more than once. An item 'converged by' the "
    "last round is only known not to change within the rounds run."
)


def _uncertainty_view(u: pd.DataFrame) -> pd.DataFrame:
    cols = {"entropy": "entropy (nats)", "p_gold": "p(gold)", "brier": "Brier", "ece": "ECE"}
    out = u[["model", "condition", "readout", "round", "n"]].copy()
    for key, label in cols.items():
        if key in u:
            out[f"{label} [95% CI]"] = fmt_ci_column(u, key, digits=3)
    return out


def blocks(tables: Tables) -> list[Block]:
    out: list[Block] = []
    flips = tables.get("flips", pd.DataFrame())
    if not flips.empty:
        out += [
            ("h2", "Self-correction rounds: flips between consecutive rounds"),
            ("table", flips),
            ("h2", "Transition counts (from -> to)"),
            ("table", tables["transitions"]),
        ]
    conv = tables.get("convergence", pd.DataFrame())
    if not conv.empty:
        out += [("h2", "Convergence across rounds"), ("table", conv),
                ("table", tables.get("converged_by_round", pd.DataFrame()))]  # fmt: skip
    exact = tables.get("exact_transitions", pd.DataFrame())
    if not exact.empty:
        out += [("h2", "Exact transitions: confidence and critique (arXiv 2412.19513)"),
                ("table", exact), ("img", "exact_transitions.png")]  # fmt: skip
    u = tables.get("uncertainty", pd.DataFrame())
    if not u.empty:
        out += [("h2", "Uncertainty and calibration per run (every item answered)"),
                ("table", _uncertainty_view(u))]  # fmt: skip
        r = tables.get("rounds_uncertainty", pd.DataFrame())
        if not r.empty:
            out += [("h2", "Uncertainty and calibration per round (the rounds' items only)"),
                    ("table", _uncertainty_view(r))]  # fmt: skip
        sem = tables.get("semantic_uncertainty", pd.DataFrame())
        if not sem.empty:
            out += [("table", sem)]
        out.append(("p", UNCERTAINTY_NOTE))
    return out


EXACT_BARS = {"confidence": "confidence (keeps a right answer)",
              "critique": "critique (fixes a wrong one)",
              "p_change": "p(answer changes)"}  # fmt: skip


def exact_figure(exact: pd.DataFrame, out: Path) -> list[Path]:
    """Confidence, critique and the change probability of round 1 given round 0, per model x
    condition, with 95% CIs (exact transitions, letter readout)."""
    if exact.empty:
        return []
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(exact)), 4))
    width = 0.8 / len(EXACT_BARS)
    labels = [f"{m[:20]}\n{c}" for m, c in zip(exact["model"], exact["condition"], strict=True)]
    for k, (col, name) in enumerate(EXACT_BARS.items()):
        y = exact[col].to_numpy(float)
        err = error_bars(y, exact[f"{col}_lo"], exact[f"{col}_hi"])
        ax.bar([i + (k - 1) * width for i in range(len(exact))], y, width, yerr=err,
               capsize=3, label=name)  # fmt: skip
    ax.set_xticks(range(len(exact)), labels, fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_title("Exact transitions, round 0 -> 1 (letter readout; 95% CI)", fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, out, "exact_transitions")


ROUND_METRICS = {"entropy": "entropy (nats)", "p_gold": "p(gold)", "ece": "ECE"}


def figures(tables: Tables, out: Path) -> list[Path]:
    """Entropy, p(gold) and ECE against round for every run with rounds, on the rounds' items
    only (95% CIs), one row per readout (the length-normalised cloze variants stay in the
    tables), a colour per model and a line style per condition; and the exact transitions."""
    made = exact_figure(tables.get("exact_transitions", pd.DataFrame()), out)
    u = tables.get("rounds_uncertainty", pd.DataFrame())
    if u.empty or u["round"].max() == 0:
        return made
    u = u[u.groupby(["model", "condition", "readout"])["round"].transform("nunique") > 1]
    if u.empty:  # no run with two rounds of its own
        return made
    readouts = [r for r in dict.fromkeys(u["readout"]) if "/" not in r] or list(
        dict.fromkeys(u["readout"])
    )
    metrics = [m for m in ROUND_METRICS if m in u]
    models = sorted(u["model"].unique())
    conds = list(dict.fromkeys(u["condition"]))
    plt = pyplot()
    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(len(readouts), len(metrics),
                             figsize=(4.6 * len(metrics), 3.2 * len(readouts) + 0.8),
                             squeeze=False)  # fmt: skip
    for row, readout in enumerate(readouts):
        for ax, metric in zip(axes[row], metrics, strict=True):
            for (model, cond), g in u[u["readout"] == readout].groupby(["model", "condition"]):
                g = g.sort_values("round")
                y = g[metric].to_numpy(float)
                ax.errorbar(g["round"], y, yerr=error_bars(y, g[f"{metric}_lo"],
                                                            g[f"{metric}_hi"]),
                            fmt="o", ls=LINE_STYLES[conds.index(cond) % len(LINE_STYLES)],
                            capsize=2,
                            ms=3, lw=1, color=colors[models.index(model) % len(colors)],
                            label=f"{model} / {cond}")  # fmt: skip
            ax.set_xlabel("round (0 = first answer)")
            ax.set_ylabel(ROUND_METRICS[metric])
            ax.set_title(f"{ROUND_METRICS[metric]} per round, {readout} readout (95% CI)",
                         fontsize=9)  # fmt: skip
            ax.grid(alpha=0.3)
    legend_below(fig)
    return made + save_figure(fig, out, "rounds_uncertainty")
