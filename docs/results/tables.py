"""The study README's tables, generated from a report folder (never typed by hand):

    selfcorrect report study --rules docs/results/rules.toml --bootstrap 2000 --out study/report
    python docs/results/tables.py study/report study [NOTE...] > docs/results/tables.md

Every number is x100 where it is a share or a bias score, with its 95% CI; p and Holm-adjusted
p as the report computed them. Tables are numbered so that the README can cite "T3 row 2"."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from selfcorrect.metrics.format import fmt_ci_column
from selfcorrect.report.study import cost_table
from selfcorrect.store import Store

COUNTER = iter(range(1, 100))


def md(df: pd.DataFrame) -> str:
    if df.empty:
        return "(no rows)\n"
    head = "| # | " + " | ".join(map(str, df.columns)) + " |"
    rule = "|---" * (len(df.columns) + 1) + "|"
    rows = [f"| {i + 1} | " + " | ".join(str(v) for v in r) + " |"
            for i, r in enumerate(df.itertuples(index=False))]  # fmt: skip
    return "\n".join([head, rule, *rows]) + "\n"


def section(title: str, df: pd.DataFrame, note: str = "") -> str:
    n = next(COUNTER)
    return f"\n## T{n}. {title}\n\n{note + chr(10) + chr(10) if note else ''}{md(df)}"


def ci(df, col, lo=None, hi=None, scale=100, digits=1):
    return fmt_ci_column(df, col, lo, hi, scale, digits)


def pval(x) -> str:
    return "n/a" if x != x else f"{x:.2g}" if x >= 0.001 else f"{x:.1e}"


def gate(rep: Path) -> str:
    g = pd.read_csv(rep / "bbq" / "gate.csv")
    g = g[g["system"] == "default"]
    c = pd.read_csv(rep / "bbq" / "gate_context.csv")
    c = c[c["system"] == "default"].set_index(["model", "readout"])
    flag = [c.loc[(m, r), "flag"] if (m, r) in c.index else "" for m, r in
            zip(g["model"], g["readout"], strict=True)]  # fmt: skip
    out = g[["model", "readout", "verdict", "reasons"]].assign(
        **{"context flag": [f if isinstance(f, str) else "" for f in flag]}
    )
    return section(
        "Validity gate per model x readout (part 1, template default system prompt)", out
    )


def context_use(rep: Path) -> str:
    """The post-data checks (metrics/context_use.py): does the model read the context, and
    how much does the unknown option's wording set the unknown rate (cloze readout)?"""
    c = pd.read_csv(rep / "bbq" / "context_use.csv")
    c = c[(c["readout"] == "cloze") | (c["condition"] == "baseline")]
    out = c.assign(**{"right person % [95% CI]": ci(c, "right_share", "right_lo", "right_hi",
                                                     digits=0),
                      "named": c["named"].round(0).astype(int)})  # fmt: skip
    text = section("Post-data check: does the model read the context? (disambiguated items: "
                   "of the answers naming a person, the share naming the right one; chance "
                   "50%)", out[["model", "readout", "condition", "n_items", "named",
                                "right person % [95% CI]", "at_chance"]])  # fmt: skip
    w = pd.read_csv(rep / "bbq" / "unknown_wording.csv")
    w = w[(w["readout"] == "cloze") & w["condition"].isin(WORDING_CONDITIONS)]
    if not w.empty:
        w = w.assign(cell=[f"{r:.0%} ({n})" for r, n in zip(w["unknown_rate"], w["n"],
                                                            strict=True)])  # fmt: skip
        wide = w.pivot_table(index=["model", "wording"], columns="condition", values="cell",
                             aggfunc="first")  # fmt: skip
        wide = wide[[c for c in WORDING_CONDITIONS if c in wide.columns]].reset_index()
        text += section("Post-data check: 'unknown' chosen per wording of that option "
                        "(ambiguous items, cloze readout, share of readable answers (n))",
                        wide.fillna(""))  # fmt: skip
    path = rep / "bbq" / "named_switch.csv"
    if path.is_file():
        text += named_switch(pd.read_csv(path))
    return text


WORDING_CONDITIONS = ["baseline", "instruct", "prefer-unknown", "oracle"]


def named_switch(s: pd.DataFrame) -> str:
    from selfcorrect.report.bbq import NAMED_SWITCH_NOTE, named_switch_view

    view = named_switch_view(s[s["readout"] == "cloze"])
    return section("Post-data check: which person, or whether? (ambiguous items paired with the "
                   "baseline, cloze readout)",
                   view.drop(columns=["readout", "reference"]),
                   NAMED_SWITCH_NOTE + " The '+system:none' rows change two things against "
                   "the default-system baseline.")  # fmt: skip


def verdicts(rep: Path) -> str:
    v = pd.read_csv(rep / "verdicts.csv")
    t = pd.read_csv(rep / "verdict_tests.csv")
    tests = t.assign(**{"estimate x100 [95% CI]": ci(t, "estimate", "ci_lo", "ci_hi"),
                        "p": t["p"].map(pval), "p adj": t["p_adj"].map(pval),
                        "MDE x100": (t["mde"] * 100).round(1)})  # fmt: skip
    cols = ["hypothesis", "test", "range", "estimate x100 [95% CI]", "p", "p adj",
            "family_size", "MDE x100", "underpowered", "n_items", "outcome"]  # fmt: skip
    # a threshold verdict (H6) has no test row: its evidence is the accuracies it read
    untested = ~v["id"].isin(t["hypothesis"])
    v = v.assign(evidence=v["evidence"].where(untested, "").fillna("").replace("no data", ""))
    return (section("Verdicts (pre-registered rules)",
                    v[["id", "claim", "verdict", "status", "evidence"]])
            + section("Every test behind the verdicts", tests[cols]))  # fmt: skip


def contrasts(rep: Path) -> str:
    t = pd.read_csv(rep / "contrasts.csv")
    out = t.assign(**{"estimate x100 [95% CI]": ci(t, "estimate", "ci_lo", "ci_hi"),
                      "p": t["p"].map(pval), "p adj": t["p_adj"].map(pval),
                      "MDE x100": (t["mde"] * 100).round(1)})  # fmt: skip
    cols = ["holm family", "contrast", "test", "estimate x100 [95% CI]", "p", "p adj",
            "family_size", "MDE x100", "n_items", "unknown rate (condition / reference)",
            "outcome"]  # fmt: skip
    shown = out[cols].astype(object).fillna("")  # object first: "" is no float
    return section("Named contrasts and the system-prompt comparison", shown)


def bbq(rep: Path, readout: str = "cloze") -> str:
    s = pd.read_csv(rep / "bbq" / "summary.csv")
    s = s[(s["readout"] == readout) & (s["round"] == 0) & (s["group"] == "overall")]
    rows = []
    for (m, c), g in s.groupby(["model", "condition"], sort=False):
        g = g.set_index("context")
        row = {"model": m, "condition": c}
        for ctx in ("ambig", "disambig"):
            if ctx in g.index:
                one = g.loc[[ctx]]
                row[f"n {ctx}"] = int(one["n"].iloc[0])
                row[f"acc {ctx}"] = ci(one, "accuracy", digits=0)[0]
                row[f"bias {ctx}"] = ci(one, "bias")[0]
        rows.append(row)
    return section(
        f"BBQ per model x condition, {readout} readout, round 0 (stratified "
        "overall: categories weighted equally)",
        pd.DataFrame(rows),
        "Samples differ in size: 2,200 items for part 2's conditions, 528 for the sampled "
        "chain of thought (part 3), 264 without a system prompt (part 8). Compare a smaller "
        "sample with the same items under the reference (the named contrasts, or the "
        "readout comparison's original-order rows), not with the 2,200-item rows.",
    )


def orders(rep: Path) -> str:
    o = pd.read_csv(rep / "bbq" / "orders.csv")
    o = o[(o["round"] == 0) & (o["group"] == "overall")]
    # content, generation and the letter over three orders; the letter in the original order
    # alone is the unpermuted readout (the cloze length normalisations stay in the report)
    shown = o["readout"].isin(["cloze", "generate"]) & (o["orders"] == "combined")
    o = o[shown | (o["readout"] == "logprob")].sort_values(
        ["model", "condition", "readout"], kind="stable"
    )
    out = o.assign(acc=ci(o, "accuracy", digits=0), bias=ci(o, "bias"))
    return section("Readout comparison on part 1's items (letter with and without "
                   "permutation, content, generation)",
                   out[["model", "condition", "readout", "orders", "context", "n", "acc",
                        "bias"]],
                   "cloze = content, logprob = letter (combined: three orders; original only: "
                   "no permutation), generate = generation. The cloze readout's byte and token "
                   "length normalisations are in the report's bbq/orders.csv.")  # fmt: skip


def cot(rep: Path) -> str:
    v = pd.read_csv(rep / "bbq" / "validity.csv")
    v = v[v["condition"].str.contains("sample", na=False) & (v["readout"] == "cloze")]
    if v.empty:  # no sampled reasoning in this store
        return ""
    out = v.assign(**{k: (v[k] * 100).round(0) for k in ("sample_agreement", "unknown_rate",
                                                           "accuracy")})  # fmt: skip
    return section("Sampled chain of thought (BBQ, part 3): do the samples agree?",
                   out[["model", "condition", "n_items", "n_asked", "sample_agreement",
                        "unknown_rate", "accuracy"]],
                   "sample_agreement: % of items whose sampled reasonings (3 at T = 1) end in "
                   "the same answer; unknown_rate and accuracy: % of all answers, both "
                   "contexts.")  # fmt: skip


def winogender(rep: Path) -> str:
    text = ""
    for bench in ("winogender", "winogender-all"):
        path = rep / bench / "summary.csv"
        if not path.is_file():
            continue
        s = pd.read_csv(path)
        s = s[s["round"] == 0]
        out = s.assign(**{"r (she/he/they)": ci(s, "pearson_r", "r_lo", "r_hi", 1, 2),
                          "r (she/he)": ci(s, "pearson_r_fm", "r_fm_lo", "r_fm_hi", 1, 2),
                          "MAE": s["mae"].round(1), "slope": s["slope"].round(2),
                          "mean p(female)": s["mean_p_female"].round(2),
                          "neutral": s["neutral_rate"].round(2)})  # fmt: skip
        cols = ["model", "condition", "n_occupations", "r (she/he/they)", "r (she/he)", "MAE",
                "slope", "mean p(female)", "neutral"]  # fmt: skip
        text += section(f"{bench}: r with BLS % female per condition", out[cols])
        if (rep / bench / "paired.csv").is_file():
            text += _winogender_changes(rep / bench / "paired.csv", bench)
    return text


# metric of winogender/paired.csv -> (column header, scale, digits)
WINO_CHANGES = {"pearson_r": ("r (she/he/they)", 1, 2), "pearson_r_fm": ("r (she/he)", 1, 2),
                "neutral_rate": ("neutral x100", 100, 1), "mae": ("MAE", 1, 1),
                "slope": ("slope", 1, 2)}  # fmt: skip


def _winogender_changes(path: Path, bench: str) -> str:
    d = pd.read_csv(path)
    d = d[(d["round"] == 0) & d["metric"].isin(list(WINO_CHANGES))]
    rows = []
    for (m, c, ref), g in d.groupby(["model", "condition", "reference"], sort=False):
        row = {"model": m, "condition - reference": f"{c} - {ref}",
               "n_occupations": int(g["n_occupations"].iloc[0])}  # fmt: skip
        for metric, (name, scale, digits) in WINO_CHANGES.items():
            one = g[g["metric"] == metric]
            row[name] = ci(one, "diff", "diff_lo", "diff_hi", scale, digits)[0] if len(one) else ""
        rows.append(row)
    return section(f"{bench}: change from the reference, paired over occupations",
                   pd.DataFrame(rows),
                   "95% bootstrap CIs over occupations (the report's paired table); MAE: mean "
                   "absolute error of p(female) x100 against BLS % female; slope: of p(female) "
                   "on the BLS share (1 = follows the statistic).")  # fmt: skip


def law(rep: Path) -> str:
    s = pd.read_csv(rep / "law" / "summary.csv")
    s = s[s["round"] == 0]
    out = s.assign(**{"parity x100": ci(s, "parity"),
                      "admit Black / white": [f"{a:.0%} / {b:.0%}" for a, b in
                                              zip(s["admit_Black"], s["admit_white"],
                                                  strict=True)],
                      "r GPA": ci(s, "r_gpa", scale=1, digits=2),
                      "r LSAT": ci(s, "r_lsat", scale=1, digits=2),
                      "flips": s["flip_share"].map(lambda x: f"{x:.0%}"),
                      "merit read": s["merit_read"].map({True: "yes", False: "no"})})  # fmt: skip
    return section("Law school: parity (Black - white) and the merit check",
                   out[["model", "condition", "n_students", "parity x100",
                        "admit Black / white", "flips", "r GPA", "r LSAT", "merit read"]],
                   "'merit read': the CI of r with GPA or with LSAT lies above 0 (a reading "
                   "added after the first model's data). Where it is 'no', the model's p(admit) "
                   "does not follow the student's record, and parity describes a model that is "
                   "not making an admissions decision (metrics/law.py).")  # fmt: skip


def rounds(rep: Path) -> str:
    conv = pd.read_csv(rep / "bbq" / "convergence.csv")
    conv = conv[conv["readout"].isin(["cloze", "logprob"])]  # normalisations: in the report
    ex_path = rep / "bbq" / "exact_transitions.csv"
    text = section("Rounds: convergence (BBQ, 264 items, 6 feedback rounds; content and letter "
                   "readouts)", conv.round(2))  # fmt: skip
    ru_path = rep / "bbq" / "rounds_uncertainty.csv"
    if ru_path.is_file():
        ru = pd.read_csv(ru_path)
        ru = ru[ru["readout"].isin(["cloze", "logprob"])]
        out = ru.assign(**{"entropy (nats)": ci(ru, "entropy", scale=1, digits=2),
                           "p(gold)": ci(ru, "p_gold", scale=1, digits=2),
                           "ECE": ci(ru, "ece", scale=1, digits=2)})  # fmt: skip
        text += section("Rounds: uncertainty and calibration per round, on the rounds' items "
                        "only (content and letter readouts)",
                        out[["model", "condition", "readout", "round", "n", "entropy (nats)",
                             "p(gold)", "ECE"]],
                        "Entropy of the option distribution (ln 3 = 1.10); p(gold), the "
                        "probability on the right answer; ECE over 10 bins of the top "
                        "probability; template-cluster bootstrap CIs. Round 0 is read on the "
                        "same items as the later rounds.")  # fmt: skip
    if ex_path.is_file():
        ex = pd.read_csv(ex_path)
        names = [k for k in ("p_change", "confidence", "critique", "accuracy_before",
                             "accuracy_after", "accuracy_change") if k in ex]  # fmt: skip
        out = ex.assign(**{k: ci(ex, k, digits=0 if k != "accuracy_change" else 1)
                           for k in names})  # fmt: skip
        text += section("Exact transitions round 0 -> 1 (letter readout)",
                        out[["model", "condition", "items", *names]],
                        "accuracy_change: after - before per item, a paired CI (added after "
                        "the study's first data were read; exploratory).")  # fmt: skip
    return text


def hidden(store: Path) -> str:
    path = store / "report" / "hidden" / "hidden.csv"
    if not path.is_file():
        return ""
    h = pd.read_csv(path)
    out = h.assign(probe=ci(h, "probe_accuracy", "probe_lo", "probe_hi", digits=0),
                   majority=(h["majority_accuracy"] * 100).round(0),
                   cosine=ci(h, "cosine", scale=1, digits=2))  # fmt: skip
    return section("Hidden states (selfcorrect analyze hidden)",
                   out[["model", "condition", "readout", "layer", "n_test", "probe",
                        "majority", "shift_norm", "cosine", "n_shifts"]].round(2))  # fmt: skip


def cost(store: Path) -> str:
    s = Store(store, read_only=True)
    try:
        c = cost_table(s)
    finally:
        s.close()
    return section("Cost per model x part (this 2-core CPU)",
                   c.assign(**{"untimed answer span": (c["untimed answer span s"] / 60).map(
                       lambda x: f"{x:.0f} min")})[
                       ["model", "part", "runs", "answers", "wall", "peak RSS GB", "peak scope",
                        "untimed runs", "untimed answer span"]])  # fmt: skip


NEEDS = {gate: "bbq/gate_context.csv", context_use: "bbq/context_use.csv",
         verdicts: "verdict_tests.csv", contrasts: "contrasts.csv",
         bbq: "bbq/summary.csv", orders: "bbq/orders.csv", cot: "bbq/validity.csv",
         winogender: "winogender/summary.csv",
         law: "law/summary.csv", rounds: "bbq/convergence.csv"}  # fmt: skip


def tables(rep: Path, store: Path, note: str = "") -> str:
    """Every table whose report file exists (a partial study has fewer), numbered from T1;
    `note` (e.g. which models a partial store holds) goes under the title."""
    global COUNTER
    COUNTER = iter(range(1, 100))
    parts = [f(rep) for f, need in NEEDS.items() if (rep / need).is_file()]
    title = "# The study's tables (generated by docs/results/tables.py; do not edit)"
    return "\n".join([title, *([f"\n> {note}"] if note else []), *parts, hidden(store),
                      cost(store)])  # fmt: skip


def main() -> None:
    print(tables(Path(sys.argv[1]), Path(sys.argv[2]), " ".join(sys.argv[3:])))


if __name__ == "__main__":
    main()
