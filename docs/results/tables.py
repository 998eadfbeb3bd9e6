"""The study README's tables, generated from a report folder (never typed by hand):

    selfcorrect report study --rules docs/results/rules.toml --bootstrap 2000 --out study/report
    python docs/results/tables.py study/report study [NOTE...] > docs/results/tables.md

Every number is x100 where it is a share or a bias score, with its 95% CI; p and Holm-adjusted
p as the report computed them. Tables are numbered so that the README can cite "T3 row 2"."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pandas as pd

from selfcorrect.metrics.format import fmt_ci_column, fmt_p
from selfcorrect.report.law import flip_split, versions_r
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


SHOWN: dict[str, tuple[int, pd.DataFrame]] = {}  # key -> (table number, rows as shown)


def section(title: str, df: pd.DataFrame, note: str = "", key: str = "") -> str:
    n = next(COUNTER)
    if key:  # the side-by-side table cites this one's rows
        SHOWN[key] = (n, df.reset_index(drop=True))
    return f"\n## T{n}. {title}\n\n{note + chr(10) + chr(10) if note else ''}{md(df)}"


def ci(df, col, lo=None, hi=None, scale=100, digits=1):
    return fmt_ci_column(df, col, lo, hi, scale, digits)


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
    # the diagnostics the gate reads, passing or not (bbq/validity.csv, round 0): the
    # baseline's and the oracle's answers over part 1's option orders
    v = pd.read_csv(rep / "bbq" / "validity.csv")
    v = v[v["round"] == 0]
    o = v[v["condition"] == "oracle"].set_index(["model", "readout"])
    v = v[v["condition"] == "baseline"].set_index(["model", "readout"])
    keys = list(zip(g["model"], g["readout"], strict=True))

    def pick(table, col, scale=1.0, digits=2):
        return [f"{table.loc[k, col] * scale:.{digits}f}"
                if k in table.index and table.loc[k, col] == table.loc[k, col] else ""
                for k in keys]  # fmt: skip

    out = out.assign(**{"position consistency": pick(v, "position_consistency"),
                        "top letter share": pick(v, "top_letter_share"),
                        "oracle accuracy %": pick(o, "accuracy", 100, 0),
                        "unparseable %": pick(v, "unparseable_rate", 100, 1)})  # fmt: skip
    return section(
        "Validity gate per model x readout (part 1, template default system prompt)",
        out,
        "The diagnostics it reads, on part 1's items over their three option orders: the "
        "baseline's position consistency, top letter share and unparseable answers, the "
        "oracle's accuracy (both contexts; the context flag reads the oracle per context); "
        "docs/validity.md has the rules and thresholds.",
        key="gate",
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
                                "right person % [95% CI]", "at_chance"]],
                   key="context")  # fmt: skip
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
                        "p": t["p"].map(fmt_p), "p adj": t["p_adj"].map(fmt_p),
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
    # the MDE is z * SE at this family's alpha; the SE falls as 1/sqrt(n) while templates
    # repeat in the same proportion (metrics/inference.items_needed: a lower bound beyond)
    needed = [int(math.ceil(n * (m * 100 / TARGET_MDE) ** 2)) if m == m and n == n else ""
              for m, n in zip(t["mde"], t["n_items"], strict=True)]  # fmt: skip
    out = t.assign(**{"estimate x100 [95% CI]": ci(t, "estimate", "ci_lo", "ci_hi"),
                      "p": t["p"].map(fmt_p), "p adj": t["p_adj"].map(fmt_p),
                      "MDE x100": (t["mde"] * 100).round(1),
                      f"items for MDE {TARGET_MDE:g} (>=)": needed})  # fmt: skip
    cols = ["holm family", "contrast", "test", "estimate x100 [95% CI]", "p", "p adj",
            "family_size", "MDE x100", "n_items", f"items for MDE {TARGET_MDE:g} (>=)",
            "unknown rate (condition / reference)", "outcome"]  # fmt: skip
    shown = out[cols].astype(object).fillna("")  # object first: "" is no float
    return section("Named contrasts and the system-prompt comparison", shown,
                   f"items for MDE {TARGET_MDE:g}: the items per condition (ambiguous ones for "
                   "an ambiguous-bias contrast, students for a parity) that a "
                   f"{TARGET_MDE:g}-point minimum detectable effect needs at the family's "
                   "alpha and 80% power, scaling this contrast's standard error as 1/sqrt(n); "
                   "a lower bound where a design already uses every template "
                   "(metrics/inference.py, items_needed).",
                   key="contrasts")  # fmt: skip


TARGET_MDE = 5.0  # points: #18's target for the main contrasts


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
        key=f"bbq-{readout}",
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


def orders_paired(rep: Path) -> str:
    """S1 - baseline per readout, paired on part 1's items, read in the original order alone
    and combined over the three orders: what the readout and the order reading alone do."""
    o = pd.read_csv(rep / "bbq" / "orders_paired.csv")
    o = o[(o["round"] == 0) & (o["group"] == "overall") & (o["condition"] == "instruct")
          & o["readout"].isin(["cloze", "logprob", "generate"])]  # fmt: skip
    o = o.assign(cell=[f"{c} (p {fmt_p(x)})" for c, x in zip(ci(o, "diff"), o["p"], strict=True)])
    keys = ["model", "context", "metric", "readout"]
    out = o.pivot_table(index=keys, columns="orders", values="cell", aggfunc="first")
    cols = [c for c in ("original only", "combined") if c in out]
    counts = o.pivot_table(index=keys, columns="orders", values="n_pairs", aggfunc="first")
    # one count where the readings agree, else each, in the columns' order
    n = counts[cols].apply(lambda r: " / ".join(dict.fromkeys(f"{v:.0f}" for v in r.dropna())),
                           axis=1).rename("n pairs")  # fmt: skip
    out = out.join(n).reset_index().sort_values(keys, kind="stable")
    return section("Readout comparison, paired: S1 - baseline on part 1's items per readout and "
                   "reading of the orders (x100)", out[[*keys, "n pairs", *cols]],
                   "The same items and answers read each way: 'original only' reads the "
                   "original option order alone (no permutation), 'combined' the answer over "
                   "the three orders. Paired cluster-bootstrap 95% CI; p: permutation test, "
                   "raw (descriptive; the verdicts make their own tests). cloze = content, "
                   "logprob = letter, generate = generation.")  # fmt: skip


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
        text += section(f"{bench}: r with BLS % female per condition", out[cols], key=bench)
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
                   "on the BLS share (1 = follows the statistic).",
                   key=f"{bench}-changes")  # fmt: skip


def law(rep: Path) -> str:
    s = pd.read_csv(rep / "law" / "summary.csv")
    s = s[(s["round"] == 0) & (s["attribute"] == "race")]  # the study varies race only
    rows = s.to_dict("records")
    out = s.assign(**{"parity x100": ci(s, "parity"),
                      "admit Black / white": [f"{a:.0%} / {b:.0%}" for a, b in
                                              zip(s["admit_Black"], s["admit_white"],
                                                  strict=True)],
                      "r GPA": ci(s, "r_gpa", scale=1, digits=2),
                      "r LSAT": ci(s, "r_lsat", scale=1, digits=2),
                      "flips": s["flip_share"].map(lambda x: f"{x:.0%}"),
                      "flips to Black / white (p)": [flip_split(r, "Black", "white")
                                                     for r in rows],
                      "r between versions": [versions_r(r) for r in rows],
                      "merit read": s["merit_read"].map({True: "yes", False: "no"}),
                      "p(yes) values": s.get("distinct_p_yes", "n/a")})  # fmt: skip
    return section("Law school: parity (Black - white) and the merit check",
                   out[["model", "condition", "n_students", "parity x100",
                        "admit Black / white", "flips", "flips to Black / white (p)",
                        "r between versions", "r GPA", "r LSAT", "merit read",
                        "p(yes) values"]],
                   "'merit read': the CI of r with GPA or with LSAT lies above 0 (a reading "
                   "added after the first model's data). Where it is 'no', the model's p(admit) "
                   "does not follow the student's record, and parity describes a model that is "
                   "not making an admissions decision (metrics/law.py). 'p(yes) values': how "
                   "many distinct values the answers' p(yes) take (the bf16 head's grid; added "
                   "after the data, preregistration.md 'After the data' item 13). 'flips to "
                   "Black / white': of the students whose decision changes with race, how many "
                   "are admitted as each version (raw exact binomial p against 1:1; where most "
                   "p(yes) lie near 0.5 on a coarse grid, a flip may be a tie broken by "
                   "rounding); 'r between versions': Pearson r over students of their two "
                   "versions' p(yes), Fisher-z CI (near 0: a student's two versions are no more "
                   "alike than two different students, sampling noise included; both added "
                   "after the data, 'After the data' item 14).",
                   key="law")  # fmt: skip


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


def _from_store(store: Path) -> tuple[pd.DataFrame, dict[str, float]]:
    """The cost table and each model's parameters (the ladder's order), from one read of the
    store."""
    s = Store(store, read_only=True)
    try:
        params = {m: info["params"] for m, info in s.models().items() if info.get("params")}
        return cost_table(s), params
    finally:
        s.close()


def cost(c: pd.DataFrame) -> str:
    """`c`: report.study.cost_table of the store."""
    return section("Cost per model x part (this 2-core CPU)",
                   c.assign(**{"untimed answer span": (c["untimed answer span s"] / 60).map(
                       lambda x: f"{x:.0f} min")})[
                       ["model", "part", "runs", "answers", "wall", "peak RSS GB", "peak scope",
                        "untimed runs", "untimed answer span"]])  # fmt: skip


def gpu(costs: pd.DataFrame, projection: Path | None) -> str:
    """perf/gpu_projection.py's table (finish.sh writes it first) beside what each model took
    on this CPU (`costs`, the table `cost` shows): a projection, not a measurement."""
    if projection is None:
        return ""
    g = pd.DataFrame(json.loads(projection.read_text()))
    c = costs.groupby("model")[["wall_s", "untimed answer span s"]].sum()
    cpu = [f"{c.loc[m, 'wall_s'] / 3600:.1f} h"
           + (f" + {c.loc[m, 'untimed answer span s'] / 3600:.1f} h untimed"
              if c.loc[m, "untimed answer span s"] else "") if m in c.index else ""
           for m in g["model"]]  # fmt: skip
    return section("Cost on one GPU: a projection beside this CPU's wall time",
                   g.assign(**{"this CPU (timed runs)": cpu}),
                   f"From {projection.name} (perf/gpu_projection.py): scoring at the H100 rate "
                   "measured on 2026-11-27 for the letter readout of a 7B shape (156.6 "
                   "answers/s; the cloze rate was not measured), generation at an assumed "
                   "decode rate (2,000, 5,000 or 20,000 tokens/s: no GPU measured it here); "
                   "'projected GPU minutes' uses 5,000. Not a measurement.")  # fmt: skip


def _cite(key: str, where: dict, show) -> str:
    """`show(row)` for the row of table `key` matching `where` (column -> value), with its
    table and row number; "-" where that table or row is not in this report."""
    if key not in SHOWN:
        return "-"
    n, df = SHOWN[key]
    if not set(where) <= set(df.columns):
        return "-"
    hit = df.index[(df[list(where)] == pd.Series(where)).all(axis=1)]
    if len(hit) > 1:  # a cell must name one row: the table lacks a column that tells them apart
        rows = ", ".join(str(i + 1) for i in hit)
        raise ValueError(f"side by side: {where} matches rows {rows} of T{n}")
    return f"{show(df.loc[hit[0]])} (T{n} row {hit[0] + 1})" if len(hit) else "-"


def _col(*cols: tuple[str, str]):
    """Show columns of one row, each after its label: _col(("r GPA", "r GPA "), ...)."""
    return lambda r: ", ".join(f"{label}{r[name]}" for name, label in cols)


def _tested(r) -> str:
    return f"{r['estimate x100 [95% CI]']}, Holm p {r['p adj']}, {r['outcome']}"


def _contrast(model: str, pair: str, metric: str = "ambig bias") -> list:
    return [("contrasts", {"test": f"{model}: {pair}, {metric}"}, _tested)]


def _wino(model: str, condition: str, *cols: tuple[str, str]) -> list:
    """r under the condition, then its change from Q (the published claims are about where r
    goes; the change is what the paired test reads)."""
    level = ("winogender", {"model": model, "condition": condition},
             _col(("r (she/he/they)", "r ")))  # fmt: skip
    where = {"model": model, "condition - reference": f"{condition} - baseline"}
    return [level, ("winogender-changes", where, _col(*cols))]


def _law(model: str) -> list:
    return [("law", {"model": model, "condition": c},
             _col(("parity x100", f"{name} "), ("merit read", "merit read ")))
            for c, name in (("baseline", "Q"), ("instruct", "Q+IF"),
                            ("cot+sample:T1", "Q+IF+CoT"))]  # fmt: skip


def _bbq(model: str, condition: str, *cols: tuple[str, str]) -> list:
    return [("bbq-cloze", {"model": model, "condition": condition}, _col(*cols))]


# published row (published.md; the hypothesis it bears on) -> what it says -> the numbers
# that bear on it, per model
SIDE_BY_SIDE = [
    (
        "this study: validity gate",
        "the content readout reads what the model means",
        lambda m: [("gate", {"model": m, "readout": "cloze"}, _col(("verdict", "")))],
    ),
    (
        "G23 1a",
        "ambiguous BBQ bias under Q: about 0 up to 22B, rising above",
        lambda m: _bbq(m, "baseline", ("bias ambig", "")),
    ),
    (
        "G23 1b, 1d; L24 5a; H1, G1",
        "Q+IF lowers ambiguous bias (G23: from 22B; L24: a "
        "safety-aligned 3.8B, not the smallest models)",
        lambda m: _contrast(m, "instruct - baseline"),
    ),
    ("G23 1c; G1", "Q+IF+CoT lowest of the three", lambda m: _contrast(m, "cot - instruct")),
    (
        "G23 1f",
        "disambiguated accuracy consistently high",
        lambda m: (
            _bbq(m, "baseline", ("acc disambig", "accuracy "))
            + [
                (
                    "context",
                    {"model": m, "readout": "cloze", "condition": "baseline"},
                    _col(("right person % [95% CI]", "right person ")),
                )
            ]
        ),
    ),
    (
        "G23 3a; G3",
        "Winogender r under Q about 0.6 at every size",
        lambda m: [
            ("winogender", {"model": m, "condition": "baseline"}, _col(("r (she/he/they)", "")))
        ],
    ),
    (
        "G23 3b; G3",
        "Q+IF lowers r, only from 22B",
        lambda m: _wino(
            m, "instruct", ("r (she/he/they)", "r - Q "), ("neutral x100", "neutral - Q ")
        ),
    ),
    (
        "G23 3c; G3",
        "Q+IF+CoT drives r toward 0 (mostly 'they')",
        lambda m: _wino(
            m, "cot+sample:T1", ("r (she/he/they)", "r - Q "), ("neutral x100", "neutral - Q ")
        ),
    ),
    (
        "G23 3d; G3",
        "Match Stats drives r toward 1",
        lambda m: _wino(m, "match_stats", ("r (she/he/they)", "r - Q "), ("slope", "slope - Q ")),
    ),
    (
        "G23 4a; G5",
        "law parity about 0 below 52B; from 52B Q against Black students, Q+IF "
        "for them; Q+IF+CoT about +2 on average",
        _law,
    ),
    (
        "this study's H3 (L24 5b: not found in what was read of L24)",
        "the size gap shrinks as instructions get specific (S4 - S1 per model)",
        lambda m: _contrast(m, "s4 - instruct"),
    ),
    (
        "L24 5d; H5",
        "a negated (unethical) instruction raises bias at every size",
        lambda m: _contrast(m, "negation - baseline"),
    ),
    (
        "this study: control",
        "prefer 'cannot be determined', nothing about bias",
        lambda m: _contrast(m, "prefer-unknown - baseline"),
    ),
    (
        "this study: H6",
        "told the answer (oracle), the model gives it",
        lambda m: _bbq(m, "oracle", ("acc ambig", "ambiguous "), ("acc disambig", "disamb. ")),
    ),
]


def side_by_side(params: dict[str, float] | None = None) -> str:
    """The numbers that bear on each published effect, cited to the tables above, one column
    per model from the smallest (`params`: parameters per model; unknown ones last): the
    README's side-by-side reading (agree, differ, cannot tell) starts from these."""
    if "gate" not in SHOWN:
        return ""
    params = params or {}
    models = sorted(dict.fromkeys(SHOWN["gate"][1]["model"]),
                    key=lambda m: (params.get(m) is None, params.get(m) or 0, m))  # fmt: skip
    rows = [{"published (where; hypothesis)": where, "what it says": says,
             **{m: "; ".join(_cite(*c) for c in cells(m)) for m in models}}
            for where, says, cells in SIDE_BY_SIDE]  # fmt: skip
    return section("Side by side with the published effects: the numbers (x100 for BBQ and "
                   "law; r and slope as they are)", pd.DataFrame(rows),
                   "The published rows paraphrase [published.md](published.md) (G23 from its "
                   "main text; L24 from its abstract and third-party summaries). Contrasts "
                   "show estimate [95% CI], Holm-adjusted p and outcome; '-' where a model "
                   "has no such row (a model that fails the validity gate enters no BBQ "
                   "test). Numbers only: which agree, differ or cannot tell is "
                   "read in the README.")  # fmt: skip


NEEDS = {gate: "bbq/gate_context.csv", context_use: "bbq/context_use.csv",
         verdicts: "verdict_tests.csv", contrasts: "contrasts.csv",
         bbq: "bbq/summary.csv", orders: "bbq/orders.csv",
         orders_paired: "bbq/orders_paired.csv", cot: "bbq/validity.csv",
         winogender: "winogender/summary.csv",
         law: "law/summary.csv", rounds: "bbq/convergence.csv"}  # fmt: skip


def _has_rows(path: Path) -> bool:
    """A report file with at least one row (a part the store lacks leaves some empty, even
    without a header: bbq/orders.csv without part 1)."""
    try:
        return path.is_file() and not pd.read_csv(path).empty
    except pd.errors.EmptyDataError:
        return False


def tables(rep: Path, store: Path, note: str = "", projection: Path | None = None) -> str:
    """Every table whose report file has rows (a partial study has fewer), numbered from T1;
    `note` (e.g. which models a partial store holds) goes under the title; `projection`, the
    GPU projection's JSON, adds its table."""
    global COUNTER
    COUNTER = iter(range(1, 100))
    SHOWN.clear()
    parts = [f(rep) for f, need in NEEDS.items() if _has_rows(rep / need)]
    title = "# The study's tables (generated by docs/results/tables.py; do not edit)"
    costs, params = _from_store(store)
    return "\n".join([title, *([f"\n> {note}"] if note else []), *parts, hidden(store),
                      cost(costs), gpu(costs, projection),
                      side_by_side(params)])  # fmt: skip


def main() -> None:
    args = sys.argv[1:]
    projection = None
    if "--gpu" in args:  # --gpu FILE: perf/gpu_projection.py's --json output
        k = args.index("--gpu")
        projection = Path(args[k + 1])
        del args[k : k + 2]
    print(tables(Path(args[0]), Path(args[1]), " ".join(args[2:]), projection))


if __name__ == "__main__":
    main()
