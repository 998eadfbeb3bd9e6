"""BBQ in a report: the headline table (accuracy %, bias x100 with CIs), paired differences,
per-category tables, and the figures of report/bbq_figures.py."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from selfcorrect.metrics.format import fmt_ci, fmt_ci_column
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
    p["diff (x100)"] = fmt_ci_column(p, "diff", scale=100)
    for col in ("p", "p_holm"):
        if col in p:
            p[col] = p[col].map(lambda x: f"{x:.3g}")
    cols = ["model", "readout", "orders", "round", "condition", "reference", "context", "metric",
            "n_pairs", "diff (x100)", "p", "p_holm"]  # fmt: skip
    return p[[c for c in cols if c in p]]


def category_table(summary: pd.DataFrame, context: str) -> pd.DataFrame:
    """Bias (x100) per group (rows) and model/condition/round (columns) for one context, under
    the main readout (a cell holds one readout's number; bbq/summary.csv has them all)."""
    part = summary[summary["context"] == context].copy()
    if part.empty:
        return pd.DataFrame()
    part = part[part["readout"] == bbq_figures.main_readout(part)]
    part["cell"] = fmt_ci_column(part, "bias", scale=100)
    part["column"] = part["model"] + " / " + part["condition"] + " / r" + part["round"].astype(str)
    order = list(dict.fromkeys(part["group"]))
    table = part.pivot_table(index="group", columns="column", values="cell", aggfunc="first")
    return table.reindex(order).reset_index()


METHOD_NOTE = (
    "Bias scores follow BBQ's reference analysis (methodology.md section 5): target_loc from "
    "additional_metadata.csv, every item counted once (the reference script double-counts "
    "64 duplicated Gender_identity rows), items with NA target_loc excluded from bias and "
    "counted. An item asked under several option orders has one answer: its content "
    "probabilities averaged over the orders (log-probability readouts) or the majority of its "
    "content answers (generation); an exact tie counts 1/k for each of the k tied options. "
    "Unparseable answers are never UNKNOWN and count as not correct in accuracy; by default "
    "they are left out of the bias score as BBQ's reference script does, and counted beside "
    "every number ('unparseable'); `selfcorrect report --unparseable wrong` keeps them in the "
    "bias score's accuracy factor as wrong answers instead. 'overall' "
    "pools the items drawn (a stratified sample gives each category equal weight; the headline "
    "uses it); the summary table also gives 'overall (BBQ weights)', each category weighted by "
    "its size in BBQ (Race_x_gender and Race_x_SES are 46% of it), and 'overall (equal "
    "weights)'."
)


GATE_NOTE = (
    "Validity gate (docs/validity.md): a model x readout 'does not follow the format' when, at "
    "baseline, the same content is chosen under every option order for fewer than {pc:.0%} of "
    "items, or more than {top:.0%} of answers sit at one letter, or it puts less than "
    "{mass:.0%} of its probability on the options (letter log-probabilities), or more than "
    "{unp:.0%} of generated answers are unreadable; or when told the answer (oracle) it gives "
    "it for fewer than {orc:.0%} of items. Such results measure the format, not bias: they are "
    "never evidence of 'no effect'."
)


def validity_table(validity: pd.DataFrame) -> pd.DataFrame:
    """Per model x condition x readout at round 0: letter shares, consistency, mass, rates."""
    if validity.empty:
        return pd.DataFrame()
    v = validity[validity["round"] == 0]
    pct = lambda x: "n/a" if x != x else f"{100 * x:.0f}%"  # noqa: E731
    return pd.DataFrame({
        "model": v["model"], "condition": v["condition"], "readout": v["readout"],
        "items": v["n_items"], "asked": v["n_asked"],
        "letters a/b/c": [f"{pct(a)}/{pct(b)}/{pct(c)}" for a, b, c in
                          zip(v["share_a"], v["share_b"], v["share_c"], strict=True)],
        "same content every order": v["position_consistency"].map(pct),
        "option mass": v["option_mass"].map(lambda x: "n/a" if x != x else f"{x:.2f}"),
        "UNKNOWN": v["unknown_rate"].map(pct), "ties": v["tie_rate"].map(pct),
        "unparseable": v["unparseable_rate"].map(pct), "accuracy": v["accuracy"].map(pct),
    })  # fmt: skip


def _gate_context_view(gc: pd.DataFrame) -> pd.DataFrame:
    if gc.empty:
        return gc
    pct = lambda x: "n/a" if x != x else f"{100 * x:.0f}%"  # noqa: E731
    num = [c for c in gc.columns if c.startswith(("oracle", "baseline"))]
    return gc.assign(**{c: gc[c].map(pct) for c in num})


def _context_use_blocks(cu: pd.DataFrame) -> list[Block]:
    """The post-data context-use check (metrics/context_use.py), beside the gate."""
    if cu.empty:
        return []
    view = cu.assign(**{"right person [95% CI]": fmt_ci_column(cu, "right_share", "right_lo",
                                                               "right_hi", 100, 0)})  # fmt: skip
    return [
        ("p", "Does the model read the context? In disambiguated items, of the answers that "
              "name a person, the share naming the right one (chance 50%; a check added after "
              "the study's first model, 2026-12-05: it describes, it excludes nothing). The "
              "rate of 'unknown' per wording of that option is in unknown_wording.csv."),
        ("table", view[["model", "readout", "condition", "n_items", "named",
                        "right person [95% CI]", "at_chance"]].round(1)),
    ]  # fmt: skip


SWITCHED = "switched to other / to stereotyped (to other if random)"
NAMED_SWITCH_NOTE = (
    "Which person, or whether? Ambiguous items, each paired with the reference condition: of "
    "the items both answer with a person, the share naming the stereotyped one under each, and "
    "its change; how many of them switch person each way, and how many would switch to the "
    "other person if switching did not depend on who was named (random switching alone pulls a "
    "share above 50% toward 50%); of the items the reference named and the condition answered "
    "'unknown', the share the reference had named stereotyped, minus that share among the "
    "items both named (above 0: the answers that turned 'unknown' were the stereotyped ones "
    "more often). Its confidence control: p(unknown) at the reference, stereotyped minus "
    "other named items (above 0: the reference put more probability on 'unknown' when it "
    "named the stereotyped person), and turned - kept within quintiles of that p(unknown) "
    "(differences within a quintile remain; 'on' = the turned items it rests on and the "
    "fewest kept items in a quintile holding turned ones; none for the generation readout). "
    "Checks added after the study's data were read: they describe, they decide nothing "
    "(metrics/context_use.py)."
)
ADJUSTED = "turned - kept within p(unknown) quintiles x100 [95% CI] (on)"
UNKNOWN_GAP = "reference p(unknown): stereotyped - other x100 [95% CI]"


def named_switch_view(ns: pd.DataFrame) -> pd.DataFrame:
    """The post-data named-switch check (metrics/context_use.py), formatted."""
    pct = lambda x: "n/a" if x != x else f"{100 * x:.0f}%"  # noqa: E731
    return ns.assign(**{
        "both named": ns["both_named"].round(0).astype(int),
        "stereotyped: reference -> condition": [f"{pct(a)} -> {pct(b)}" for a, b in
                                                zip(ns["stereo_reference"],
                                                    ns["stereo_condition"], strict=True)],
        "change x100 [95% CI]": fmt_ci_column(ns, "change", scale=100),
        SWITCHED: [f"{a:.0f} / {b:.0f} ({r:.0f})" for a, b, r in
                   zip(ns["to_other"], ns["to_stereo"], ns["to_other_if_random"], strict=True)],
        "turned unknown": ns["turned_unknown"].round(0).astype(int),
        "of those stereotyped": ns["turned_stereo"].map(pct),
        "turned - kept x100 [95% CI]": fmt_ci_column(ns, "turned_minus_kept", "turned_lo",
                                                     "turned_hi", 100),
        UNKNOWN_GAP: _ci_or_na(ns, "ref_unknown_gap"),
        ADJUSTED: _adjusted(ns)})[
        ["model", "readout", "condition", "reference", "n_items", "both named",
         "stereotyped: reference -> condition", "change x100 [95% CI]", SWITCHED,
         "turned unknown", "of those stereotyped", "turned - kept x100 [95% CI]", UNKNOWN_GAP,
         ADJUSTED]]  # fmt: skip


def _adjusted(ns: pd.DataFrame) -> list[str]:
    cis = _ci_or_na(ns, "turned_adjusted")
    if "turned_adjusted_used" not in ns:
        return cis
    return [
        c if c == "n/a" else f"{c} ({u:.0f} turned; kept >= {k:.0f})"
        for c, u, k in zip(
            cis, ns["turned_adjusted_used"], ns["turned_adjusted_min_kept"], strict=True
        )
    ]


def _ci_or_na(ns: pd.DataFrame, col: str) -> list[str]:
    """A confidence-control column; n/a where the store has no probabilities (or an older
    report lacks the column)."""
    if col not in ns:
        return ["n/a"] * len(ns)
    return fmt_ci_column(ns, col, scale=100)


def _named_switch_blocks(ns: pd.DataFrame) -> list[Block]:
    if ns.empty:
        return []
    return [("p", NAMED_SWITCH_NOTE), ("table", named_switch_view(ns))]


def validity_blocks(tables: Tables) -> list[Block]:
    from selfcorrect.metrics.choices import GATE

    gate = tables.get("gate", pd.DataFrame())
    if gate.empty:
        return []
    note = GATE_NOTE.format(pc=GATE["position_consistency_min"], top=GATE["top_letter_max"],
                            mass=GATE["option_mass_min"], unp=GATE["unparseable_max"],
                            orc=GATE["oracle_accuracy_min"])  # fmt: skip
    return [
        ("h2", "Validity: does the model answer by content or by letter?"),
        ("table", gate),
        ("p", note),
        (
            "p",
            "Per context (the gate pools them), on every item the metrics read (in its "
            "original order; the gate reads the permuted items over their orders): oracle "
            "accuracy, and the share of baseline answers that are 'unknown'; flagged where "
            "told the answer it gives it in fewer "
            "than half of the disambiguated items, or where it answers 'unknown' in more "
            "than 90% of them (a habit that passes the pooled gate with a perfect ambiguous "
            "score). A flag is read beside every result of that model; it excludes nothing.",
        ),
        ("table", _gate_context_view(tables.get("gate_context", pd.DataFrame()))),
        *_context_use_blocks(tables.get("context_use", pd.DataFrame())),
        *_named_switch_blocks(tables.get("named_switch", pd.DataFrame())),
        ("table", validity_table(tables.get("validity", pd.DataFrame()))),
    ]


def gate_lines(tables: Tables) -> list[str]:
    """The gate in plain words, one line per model x readout (for the terminal)."""
    gate = tables.get("gate", pd.DataFrame())
    out = []
    for r in gate.itertuples():
        system = getattr(r, "system", "default")
        label = r.readout if system == "default" else f"{r.readout}, system prompt {system}"
        if r.verdict == "passes":
            unchecked = [x for x in r.reasons.split("; ") if "not applied" in x]
            out.append(f"{r.model} ({label}): passes the validity gate"
                       + "".join(f" ({x})" for x in unchecked))  # fmt: skip
        else:
            out.append(f"{r.model} ({label}): {r.verdict.upper()}: {r.reasons}")
    return out


def blocks(tables: Tables) -> list[Block]:
    summary = tables.get("summary", pd.DataFrame())
    out: list[Block] = [
        *validity_blocks(tables),
        ("h2", "Overall (accuracy %, bias score x100; 95% cluster-bootstrap CIs over templates)"),
        ("table", headline(summary)),
    ]
    if not summary.empty:
        out.append(("img", "bbq_conditions.png"))
    if not tables.get("paired", pd.DataFrame()).empty:
        out += [
            ("h2", "Paired differences vs the reference condition (same items), overall"),
            ("table", paired_table(tables["paired"])),
            (
                "p",
                "p: permutation test over templates; p_holm: Holm-adjusted over every row of "
                "paired.csv (all groups). Descriptive: the verdicts make their own tests.",
            ),
        ]
    orders = tables.get("orders", pd.DataFrame())
    if not orders.empty:
        views = [headline(g).assign(orders=name) for name, g in orders.groupby("orders")]
        out += [
            ("h2", "Readout comparison: the items asked under every option order (round 0)"),
            ("table", pd.concat(views, ignore_index=True).sort_values(
                ["model", "condition", "readout", "orders"], kind="stable")),
            ("p", "The same answers read two ways: combined over the option orders, and the "
                  "original order alone (a run without permutation). Where a model x readout "
                  "also holds items asked in the original order only, the tables above read "
                  "every item in its original order, so that all compared answers share one "
                  "design."),
            ("img", "bbq_readouts.png"),
        ]  # fmt: skip
    orders_paired = tables.get("orders_paired", pd.DataFrame())
    if not orders_paired.empty:
        out += [
            ("h2", "Readout comparison, paired: each condition - the reference on those items, "
                   "per readout and reading of the orders (overall)"),
            ("table", paired_table(orders_paired).sort_values(
                ["model", "condition", "context", "metric", "readout", "orders"], kind="stable")),
            ("p", "What the readout and the order reading alone do to a contrast: the same "
                  "items and answers, read each way. p and p_holm as above, Holm over each "
                  "reading's rows (orders_paired.csv). Descriptive."),
        ]  # fmt: skip
    for ctx in ("ambig", "disambig"):
        if not summary.empty:
            out += [
                (
                    "h2",
                    f"Bias score x100 by category, {ctx} contexts "
                    f"({bbq_figures.main_readout(summary)} readout)",
                ),
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
    orders = tables.get("orders", pd.DataFrame())
    if not orders.empty:
        paths += bbq_figures.readout_figure(orders, out)
    return paths


SECTION = Section(headline=headline, blocks=blocks, figures=figures, notes=gate_lines)
