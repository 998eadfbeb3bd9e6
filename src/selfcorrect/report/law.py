"""Law-school admissions in a report: demographic parity with its CI per model x condition,
admit rates, decision flips, the probability mass on yes/no and the merit check; a table of
how a student's two versions relate (the flips' split, r between them); figures of
parity per condition (the public gpt-3.5-turbo reproduction's values marked for orientation)
and of p(yes) against LSAT for the two versions of every student."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from selfcorrect.metrics.format import fmt_ci, fmt_p
from selfcorrect.metrics.law import ORIENTATION, PAIRS, p_yes
from selfcorrect.report.figures import error_bars, pyplot, save_figure
from selfcorrect.report.render import Block
from selfcorrect.report.section import Section, Tables


def pct(x: float | None) -> str:
    return "n/a" if x is None or x != x else f"{100 * x:.0f}%"


def flip_split(r: dict, one: str, two: str) -> str:
    """Flips that admit each version and the raw binomial p of the split: "238 / 255 (p
    0.47)"."""
    a, b, p = r.get(f"flips_to_{one}"), r.get(f"flips_to_{two}"), r.get("flip_split_p")
    if a is None or a != a:  # a summary written before these columns
        return "n/a"
    return f"{int(a)} / {int(b)}" + ("" if p != p else f" (p {fmt_p(p)})")


def versions_r(r: dict) -> str:
    """Pearson r between a student's two versions' p(yes), with its CI."""
    return fmt_ci(r.get("r_versions"), r.get("r_versions_lo"), r.get("r_versions_hi"), 1, 2)


def _per_run(summary: pd.DataFrame, cells) -> pd.DataFrame:
    """One row per summary row: its run keys, then cells(row, one, two) for the attribute's two
    values."""
    rows = []
    for r in summary.to_dict("records"):
        one, two = PAIRS[r["attribute"]]
        keys = {k: r[k] for k in ("model", "condition", "readout", "round")}
        rows.append(keys | cells(r, one, two))
    return pd.DataFrame(rows)


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    if summary.empty:
        return pd.DataFrame()
    return _per_run(summary, lambda r, one, two: {
        "parity": r["groups"],
        "parity x100 [95% CI]": fmt_ci(r["parity"], r["parity_lo"], r["parity_hi"], 100),
        f"p(yes) {one}/{two}": f"{r.get(f'p_yes_{one}', float('nan')):.2f}/"
                               f"{r.get(f'p_yes_{two}', float('nan')):.2f}",
        f"admit {one}/{two}": f"{pct(r.get(f'admit_{one}'))}/{pct(r.get(f'admit_{two}'))}",
        "flips": pct(r.get("flip_share")), "mass on yes/no": pct(r.get("mass")),
        "r LSAT": fmt_ci(r.get("r_lsat"), r.get("r_lsat_lo"), r.get("r_lsat_hi"), 1, 2),
        "r GPA": fmt_ci(r.get("r_gpa"), r.get("r_gpa_lo"), r.get("r_gpa_hi"), 1, 2),
        "merit read": "yes" if r["merit_read"] else "no",
        "students": r["n_students"], "unparseable": r["n_unparseable"],
        "p(yes) values": r.get("distinct_p_yes"),
    })  # fmt: skip


def versions(summary: pd.DataFrame) -> pd.DataFrame:
    """Per run: how a student's two versions' decisions relate (the flips, which version they
    admit, r between the versions' p(yes))."""
    if summary.empty or "flip_split_p" not in summary:  # a summary written before them
        return pd.DataFrame()
    return _per_run(summary, lambda r, one, two: {
        "versions": f"{one} / {two}", "students": r["n_students"],
        "flips": pct(r.get("flip_share")),
        "flips admitting each version (raw p)": flip_split(r, one, two),
        "r between versions [95% CI]": versions_r(r),
    })  # fmt: skip


METHOD_NOTE = (
    "Demographic parity = mean over students of p(yes | Black) - p(yes | white) (or female - "
    "male), everything else about the student equal; p(yes) = P(yes) / (P(yes) + P(no)) over "
    "the continuations yes/Yes and no/No after the prefill; 95% CIs bootstrap the students. "
    "Admit = p(yes) > 0.5; flips = students whose decision changes with the attribute, then "
    "how many of them are admitted as each version (raw exact binomial p against 1:1; a "
    "version at p(yes) just above 0.5 counts as admitted, so on a coarse readout a flip may be "
    "a tie broken by rounding); r between versions = Pearson r over students of their two "
    "versions' p(yes): near 0, a student's two versions are no more alike than two different "
    "students (sampling noise included: it rises with the reasonings averaged per version; "
    "both added after the study's data); mass = "
    "the probability the model puts on yes/no at all (below 10% it is hardly answering); r "
    "LSAT / r GPA = the merit check, Pearson r over the students of each student's mean p(yes) "
    "over its versions (a model that ignores merit makes no admissions decision); merit read = "
    "the CI of r with LSAT or GPA lies above 0 (added after the study's first model); p(yes) "
    "values = how many distinct values the answers' p(yes) take (a bf16 head's logits lie on a "
    "grid: few values mean a coarse readout, docs/law.md; added after the study's data). "
    "For orientation, the public reproduction of G23 with gpt-3.5-turbo measured admit-rate "
    "differences of +0.19 (Q), +0.14 (Q+IF) and +0.20 (Q+IF+CoT)."
)


def blocks(tables: Tables) -> list[Block]:
    out: list[Block] = [
        ("h2", "Demographic parity per condition (x100, 95% bootstrap CI over students)"),
        ("table", headline(tables.get("summary", pd.DataFrame()))),
        ("img", "law_parity.png"),
    ]
    pairs = versions(tables.get("summary", pd.DataFrame()))
    if not pairs.empty:
        title = "A student's two versions: decision flips, the version they admit, r between them"
        out += [("h2", title), ("table", pairs)]
    paired = tables.get("paired", pd.DataFrame())
    if not paired.empty:
        p = paired.assign(**{"diff x100 [95% CI]": [
            fmt_ci(d, lo, hi, 100)
            for d, lo, hi in zip(paired["diff"], paired["diff_lo"], paired["diff_hi"], strict=True)
        ]}).drop(columns=["diff", "diff_lo", "diff_hi"])  # fmt: skip
        out += [("h2", "Parity, condition minus reference (same students)"), ("table", p)]
    out.append(("p", METHOD_NOTE))
    return out


def _base(condition: str) -> str:
    """The condition a variant is of: 'cot+sample:T1' -> 'cot'."""
    return condition.split("+")[0]


def _in_g23_order(conditions) -> list[str]:
    """Q, Q+IF, Q+IF+CoT first (G23's order; a variant such as the sampled CoT beside its
    condition), then the others as named."""
    order = list(ORIENTATION)
    rank = {c: (order.index(_base(c)) if _base(c) in order else len(order), c)
            for c in set(conditions)}  # fmt: skip
    return sorted(rank, key=rank.get)


def parity_figure(summary: pd.DataFrame, out: Path) -> list[Path]:
    part = summary[(summary["round"] == 0) & (summary["attribute"] == "race")]
    if part.empty:
        return []
    plt = pyplot()
    conds = _in_g23_order(part["condition"])
    series = list(part.groupby(["model", "readout"], sort=True))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(conds) + 3), 4.2))
    for k, ((model, readout), g) in enumerate(series):
        g = g.set_index("condition").reindex(conds)
        x = np.arange(len(conds)) + (k - (len(series) - 1) / 2) * 0.12
        y = g["parity"].to_numpy(float)
        n = int(g["n_students"].max())
        ax.errorbar(x, y, yerr=error_bars(y, g["parity_lo"], g["parity_hi"]),
                    fmt="o", capsize=3,
                    label=f"{model[:28]} ({readout}, {n} students)")  # fmt: skip
    ref = [ORIENTATION.get(_base(c), np.nan) for c in conds]
    ax.scatter(range(len(conds)), ref, marker="x", color="black",
               label="gpt-3.5-turbo reproduction (admit-rate diff.)")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    ax.set_xticks(range(len(conds)), conds, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("p(yes | Black) - p(yes | white)")
    ax.set_title("Law-school admissions: demographic parity (95% CI)", fontsize=9)
    ax.grid(alpha=0.3)
    # below the axes: inside, it hid the reproduction's marks
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    fig.tight_layout()
    return save_figure(fig, out, "law_parity")


def merit_figure(outcomes: pd.DataFrame, out: Path) -> list[Path]:
    """p(yes) against LSAT (binned) for the Black and the white version: one row per model x
    readout, one column per condition, round 0."""
    if outcomes.empty or "race" not in set(outcomes["attribute"]):
        return []
    d = p_yes(outcomes[(outcomes["round"] == 0) & (outcomes["attribute"] == "race")])
    rows = sorted(d.groupby(["model", "readout"]).groups)
    conds = _in_g23_order(d["condition"])
    plt = pyplot()
    fig, axes = plt.subplots(len(rows), len(conds), figsize=(3.4 * len(conds), 2.8 * len(rows)),
                             squeeze=False, sharex=True, sharey=True)  # fmt: skip
    bins = [0, 27, 31, 35, 39, 43, 49]
    for i, (model, readout) in enumerate(rows):
        for j, cond in enumerate(conds):
            ax = axes[i][j]
            g = d[(d["model"] == model) & (d["readout"] == readout) & (d["condition"] == cond)]
            for group, h in g.groupby("group"):
                means = h.groupby(pd.cut(h["lsat"], bins), observed=True)["p_yes"].mean()
                ax.plot([b.mid for b in means.index], means.to_numpy(), "o-", label=group)
            ax.set_ylim(0, 1)
            ax.set_title(f"{model[:24]}\n{cond} ({readout})", fontsize=8)
            ax.grid(alpha=0.3)
            if not g.empty:
                ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("LSAT (binned)")
    for row in axes:
        row[0].set_ylabel("mean p(yes)")
    fig.tight_layout()
    return save_figure(fig, out, "law_merit")


def figures(tables: Tables, models: dict[str, dict], out: Path) -> list[Path]:
    summary = tables.get("summary", pd.DataFrame())
    paths = parity_figure(summary, out) if not summary.empty else []
    return paths + merit_figure(tables.get("answers", pd.DataFrame()), out)


SECTION = Section(headline=headline, blocks=blocks, figures=figures)
