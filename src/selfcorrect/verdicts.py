"""Verdicts on the hypotheses of methodology.md (section 1), by the rules of a rules file
(rules/default.toml; see rules_file.py), computed from item-level answers.

Every hypothesis names the model range it is about; without a model in that range here its
verdict is "out of scope here" and says what would be needed, and its tests are still run on the
models here as descriptive evidence. A model that fails the validity gate enters no test. Each
test is a paired difference (or an interaction between two models) with a cluster-bootstrap CI
and a permutation p-value over templates; p-values are adjusted over every test of the report.
A test shows an effect when its adjusted p < alpha, no effect when its CI lies inside the region
of practical equivalence, and is inconclusive otherwise: "not significant" is never "no
effect"."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from selfcorrect.metrics.bbq import BIAS, accuracy, template_counts
from selfcorrect.metrics.format import fmt_ci
from selfcorrect.metrics.inference import ADJUST, Estimate, interaction, paired_difference
from selfcorrect.metrics.stats import bootstrap
from selfcorrect.rules_file import Hypothesis, Rules

# The tables the hypotheses read from each benchmark's kit (checked by the tests).
INPUTS = {"bbq": ("summary", "paired", "gate"), "winogender": ("summary", "paired")}
UP, DOWN, NONE, UNCLEAR = "up", "down", "no effect", "inconclusive"


def _metric(name: str, context: str):
    return accuracy if name == "accuracy" else BIAS[context]


@dataclass
class _Test:
    hypothesis: str
    label: str
    est: Estimate
    kind: str  # paired | interaction
    descriptive: bool = False  # run on models outside the claim's range
    p_adj: float = math.nan
    outcome: str = UNCLEAR


@dataclass
class _Evidence:
    """Item-level BBQ answers (one readout, round 0, combined over orders), the models'
    metadata, which models passed the gate, and every test made."""

    items: pd.DataFrame
    models: dict[str, dict]
    eligible: list[str]
    excluded: dict[str, str]
    rules: Rules
    seed: int
    law: pd.DataFrame = field(default_factory=pd.DataFrame)  # law-school answers with p(yes)
    tests: list[_Test] = field(default_factory=list)
    _cache: dict = field(default_factory=dict)

    def params(self, model: str) -> float:
        return float(self.models.get(model, {}).get("params") or math.nan)

    def in_scope(self, scope: str, pool: list[str] | None = None) -> list[str]:
        s = self.rules.scope(scope)
        pool = self.eligible if pool is None else pool
        return sorted((m for m in pool if s.holds(self.models.get(m, {}))), key=self.params)

    def law_models(self) -> list[str]:
        return sorted(set(self.law["model"]), key=self.params) if not self.law.empty else []

    def counts(self, model: str, condition: str, context: str, uids) -> pd.DataFrame:
        d = self.items
        part = d[(d["model"] == model) & (d["condition"] == condition)
                 & (d["context_condition"] == context) & d["uid"].isin(uids)]  # fmt: skip
        return template_counts(part)

    def uids(self, model: str, condition: str) -> set:
        key = (model, condition)
        if key not in self._cache:
            d = self.items
            self._cache[key] = set(d[(d["model"] == model) & (d["condition"] == condition)]["uid"])
        return self._cache[key]

    def ran(self, model: str, *conditions: str) -> bool:
        return all(self.uids(model, c) for c in conditions)


def _aligned(frames: list[pd.DataFrame]) -> list[np.ndarray]:
    common = frames[0].index
    for f in frames[1:]:
        common = common.intersection(f.index)
    return [f.loc[common].to_numpy() for f in frames]


def _paired_test(ev: _Evidence, hid: str, model: str, cond: str, ref: str, metric: str,
                 context: str, descriptive: bool) -> _Test | None:  # fmt: skip
    if not ev.ran(model, cond, ref):
        return None
    uids = ev.uids(model, cond) & ev.uids(model, ref)
    a, b = _aligned([ev.counts(model, ref, context, uids), ev.counts(model, cond, context, uids)])
    n = int(a[:, 0].sum())
    est = paired_difference(a, b, _metric(metric, context), n, ev.rules.bootstrap,
                            ev.rules.permutations, ev.seed)  # fmt: skip
    label = f"{model}: {cond} - {ref}, {context} {metric}"
    test = _Test(hid, label, est, "paired", descriptive)
    ev.tests.append(test)
    return test


def _interaction_test(ev: _Evidence, hid: str, a: str, b: str, cond: str, ref: str,
                      metric: str, context: str, descriptive: bool) -> _Test | None:  # fmt: skip
    if not (ev.ran(a, cond, ref) and ev.ran(b, cond, ref)):
        return None
    uids = ev.uids(a, cond) & ev.uids(a, ref) & ev.uids(b, cond) & ev.uids(b, ref)
    parts = _aligned([ev.counts(m, c, context, uids) for m in (a, b) for c in (ref, cond)])
    est = interaction(*parts, _metric(metric, context), int(parts[0][:, 0].sum()),
                      ev.rules.bootstrap, ev.rules.permutations, ev.seed)  # fmt: skip
    label = f"({cond} - {ref}) in {a} minus in {b}, {context} {metric}"
    test = _Test(hid, label, est, "interaction", descriptive)
    ev.tests.append(test)
    return test


def _outcomes(ev: _Evidence) -> None:
    """Adjust every p over the report's family of tests, then classify each test."""
    adjusted = ADJUST[ev.rules.multiplicity]([t.est.p for t in ev.tests])
    for t, p in zip(ev.tests, adjusted, strict=True):
        t.p_adj = p
        e, rope = t.est, ev.rules.rope
        if p == p and p < ev.rules.alpha:
            t.outcome = UP if e.value > 0 else DOWN
        elif e.lo == e.lo and -rope <= e.lo and e.hi <= rope:
            t.outcome = NONE
        else:
            t.outcome = UNCLEAR


def _judge(tests: list[_Test], direction: str) -> str:
    """supported: every test shows the effect in `direction`; not supported: one shows none
    or the opposite; else inconclusive."""
    if not tests:
        return "not tested"
    if all(t.outcome == direction for t in tests):
        return "supported"
    if any(t.outcome in (NONE, UP if direction == DOWN else DOWN) for t in tests):
        return "not supported"
    return "inconclusive"


def _out_of_scope(ev: _Evidence, h: Hypothesis, *scopes: str) -> str:
    here = (
        ", ".join(f"{m} ({ev.params(m) / 1e6:,.0f}M)" for m in sorted(ev.eligible, key=ev.params))
        or "none"
    )
    needs = " and ".join(ev.rules.scope(s).describe() for s in scopes)
    return f"out of scope here: the claim is about {needs} models; models here: {here}"


def _effect(ev: _Evidence, hid: str, h: Hypothesis):
    c = h.contrast
    large = ev.in_scope(h.scope)
    pool = large or ev.eligible
    main = [t for m in pool
            if (t := _paired_test(ev, hid, m, c.condition, c.reference, c.metric, c.context,
                                  not large))]  # fmt: skip
    if h.also:
        for m in pool:
            _paired_test(ev, hid, m, c.condition, c.reference, h.also.metric, h.also.context,
                         not large)  # fmt: skip
    control = []
    if large and h.control:
        control = [t for a in large for b in ev.in_scope(h.control) if a != b
                   if (t := _interaction_test(ev, hid, a, b, c.condition, c.reference, c.metric,
                                              c.context, False))]  # fmt: skip

    def decide():
        if not large:
            return _out_of_scope(ev, h, h.scope)
        return _judge(main + control, c.direction)

    return decide


def _pairs(ev: _Evidence, h: Hypothesis) -> tuple[list[tuple[str, str]], bool]:
    """(model pairs to compare, whether they are in the claim's range); out of range, the
    largest and smallest models here, as description."""
    pairs = [(a, b) for a in ev.in_scope(h.scope) for b in ev.in_scope(h.versus) if a != b]
    if pairs:
        return pairs, True
    chat = sorted(ev.eligible, key=ev.params)
    return ([(chat[-1], chat[0])] if len(chat) >= 2 else []), False


def _interaction(ev: _Evidence, hid: str, h: Hypothesis):
    c = h.contrast
    pairs, in_range = _pairs(ev, h)
    tests = [t for a, b in pairs
             if (t := _interaction_test(ev, hid, a, b, c.condition, c.reference, c.metric,
                                        c.context, not in_range))]  # fmt: skip
    return lambda: (
        _judge(tests, c.direction) if in_range else _out_of_scope(ev, h, h.scope, h.versus)
    )


def _gap_shrinks(ev: _Evidence, hid: str, h: Hypothesis):
    c = h.contrast
    pairs, in_range = _pairs(ev, h)
    duo = []
    for a, b in pairs:
        abstract = _interaction_test(ev, hid, a, b, c.condition, c.reference, c.metric,
                                     c.context, not in_range)  # fmt: skip
        specific = _interaction_test(ev, hid, a, b, h.specific, c.reference, c.metric,
                                     c.context, not in_range)  # fmt: skip
        if abstract and specific:
            duo.append((abstract, specific))

    def decide():
        if not in_range:
            return _out_of_scope(ev, h, h.scope, h.versus)
        if not duo:
            return "not tested"
        good = all(s1.outcome == c.direction and s4.outcome == NONE for s1, s4 in duo)
        bad = any(s1.outcome in (NONE, UP if c.direction == DOWN else DOWN)
                  or (s4.outcome == c.direction and abs(s4.est.value) >= abs(s1.est.value))
                  for s1, s4 in duo)  # fmt: skip
        return "supported" if good else "not supported" if bad else "inconclusive"

    return decide


def _threshold(ev: _Evidence, hid: str, h: Hypothesis):
    rows = []
    for m in ev.in_scope(h.scope):
        d = ev.items
        part = d[(d["model"] == m) & (d["condition"] == h.condition)]
        for ctx in ("ambig", "disambig"):
            sub = part[part["context_condition"] == ctx]
            if not sub.empty:
                counts = template_counts(sub).to_numpy()
                value, (lo, hi), _ = bootstrap(counts, accuracy, ev.rules.bootstrap, ev.seed)
                rows.append((m, ctx, value, lo, hi))
    lines = [f"{m} {ctx}: {h.condition} accuracy {fmt_ci(v, lo, hi, 100)}%"
             for m, ctx, v, lo, hi in rows]  # fmt: skip

    def decide():
        if not rows:
            return "not tested" if ev.in_scope(h.scope) else _out_of_scope(ev, h, h.scope)
        if all(lo >= h.threshold for *_, lo, _ in rows):
            return "supported"
        return "not supported" if any(hi < h.threshold for *_, hi in rows) else "inconclusive"

    decide.evidence = lines
    return decide


def _ordered(ev: _Evidence, hid: str, h: Hypothesis):
    c = h.contrast
    large = ev.in_scope(h.scope)
    pool = large or ev.eligible
    tests = [
        t
        for m in pool
        for cond, ref in h.steps
        if (t := _paired_test(ev, hid, m, cond, ref, c.metric, c.context, not large))
    ]
    return lambda: _judge(tests, c.direction) if large else _out_of_scope(ev, h, h.scope)


def _winogender(ev: _Evidence, hid: str, h: Hypothesis):
    large = ev.in_scope(h.scope)
    return lambda: "not tested (the Winogender test of G3 is judged from its tables)" if large \
        else _out_of_scope(ev, h, h.scope)  # fmt: skip


def _law_pairs(ev: _Evidence, model: str, condition: str, students=None):
    """Per student [p(yes | Black), 1] and [p(yes | white), 1], for the students given."""
    from selfcorrect.metrics.law import per_student

    d = ev.law
    part = d[(d["model"] == model) & (d["condition"] == condition)]
    s = per_student(part, "race").set_index("student") if not part.empty else pd.DataFrame()
    if s.empty:
        return None
    if students is not None:
        s = s.loc[s.index.intersection(students)]
    ones = np.ones(len(s))
    return s.index, np.column_stack([s["p_two"], ones]), np.column_stack([s["p_one"], ones])


def _mean(c):
    return c[..., 0] / c[..., 1]


def _law_parity(ev: _Evidence, hid: str, h: Hypothesis):
    """Parity under Q differs from 0 (outside the equivalence region), and each instruction
    step raises it (tests over students)."""
    large = ev.in_scope(h.scope, ev.law_models())
    pool = large or ev.law_models()
    groups = []
    for m in pool:
        q = _law_pairs(ev, m, "baseline")
        if q is None:
            continue
        idx, white, black = q
        base = paired_difference(white, black, _mean, len(idx), ev.rules.bootstrap,
                                 ev.rules.permutations, ev.seed)  # fmt: skip
        tests = [_Test(hid, f"{m}: parity under baseline (Q)", base, "paired", not large)]
        for cond, ref in h.steps or []:
            x = _law_pairs(ev, m, cond, idx)
            r = _law_pairs(ev, m, ref, x[0]) if x else None
            if x and r:
                est = interaction(x[1], x[2], r[1], r[2], _mean, len(x[0]), ev.rules.bootstrap,
                                  ev.rules.permutations, ev.seed)  # fmt: skip
                tests.append(_Test(hid, f"{m}: parity under {cond} - under {ref}", est,
                                   "interaction", not large))  # fmt: skip
        ev.tests += tests
        groups.append(tests)

    def decide():
        if not large:
            return _out_of_scope(ev, h, h.scope)
        if not groups:
            return "not tested"
        good = all(g[0].outcome in (UP, DOWN) and all(t.outcome == UP for t in g[1:])
                   for g in groups)  # fmt: skip
        bad = any(g[0].outcome == NONE or any(t.outcome in (NONE, DOWN) for t in g[1:])
                  for g in groups)  # fmt: skip
        return "supported" if good else "not supported" if bad else "inconclusive"

    return decide


KINDS = {"effect": _effect, "interaction": _interaction, "gap_shrinks": _gap_shrinks,
         "threshold": _threshold, "ordered": _ordered, "winogender": _winogender,
         "law_parity": _law_parity}  # fmt: skip


def _eligible(items: pd.DataFrame, gate: pd.DataFrame, readout: str):
    models = sorted(set(items["model"])) if not items.empty else []
    excluded = {}
    if not gate.empty:
        g = gate[gate["readout"] == readout].set_index("model")
        for m in models:
            if m in g.index and g.loc[m, "verdict"] != "passes":
                excluded[m] = f"{g.loc[m, 'verdict']} ({g.loc[m, 'reasons']})"
    return [m for m in models if m not in excluded], excluded


def tests_table(ev: _Evidence) -> pd.DataFrame:
    return pd.DataFrame([
        {"hypothesis": t.hypothesis, "test": t.label, "kind": t.kind,
         "range": "descriptive (outside the claim's range)" if t.descriptive else "in range",
         "estimate": t.est.value, "ci_lo": t.est.lo, "ci_hi": t.est.hi, "p": t.est.p,
         "p_adj": t.p_adj, "mde": t.est.mde,
         "underpowered": bool(t.est.mde > ev.rules.rope) if t.est.mde == t.est.mde else True,
         "n_items": t.est.n_items, "n_templates": t.est.n_clusters, "outcome": t.outcome}
        for t in ev.tests
    ])  # fmt: skip


def _evidence_lines(ev: _Evidence, hid: str, decide) -> list[str]:
    lines = list(getattr(decide, "evidence", []))
    for t in ev.tests:
        if t.hypothesis == hid:
            tag = " (descriptive)" if t.descriptive else ""
            lines.append(f"{t.label}{tag} = {fmt_ci(t.est.value, t.est.lo, t.est.hi, 100)}, "
                         f"p {t.est.p:.3g} (adj. {t.p_adj:.3g}): {t.outcome}")  # fmt: skip
    return lines


def judge(items: pd.DataFrame, models: dict[str, dict], gate: pd.DataFrame, rules: Rules,
          seed: int = 0,
          law: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """(verdicts, tests) from item-level BBQ answers (combined over orders) and law-school
    answers (with p(yes))."""
    part = items
    if not items.empty:
        part = items[(items["readout"] == rules.readout) & (items["round"] == 0)]
    eligible, excluded = _eligible(part, gate, rules.readout)
    law_part = law if law is not None else pd.DataFrame()
    if not law_part.empty:
        law_part = law_part[(law_part["readout"] == rules.readout) & (law_part["round"] == 0)]
    ev = _Evidence(part, models, eligible, excluded, rules, seed, law_part)
    plans = {hid: KINDS[h.kind](ev, hid, h) for hid, h in rules.hypotheses.items()}
    _outcomes(ev)
    rows = []
    for hid, decide in plans.items():
        h = rules.hypotheses[hid]
        verdict = decide()
        evidence = _evidence_lines(ev, hid, decide)
        if excluded:
            evidence.append("excluded (validity gate): " + "; ".join(
                f"{m}: {why}" for m, why in excluded.items()))  # fmt: skip
        rows.append({"id": hid, "claim": h.claim, "source": h.source,
                     "scope": rules.scope(h.scope).describe(), "verdict": verdict,
                     "evidence": "; ".join(evidence) or "no data"})  # fmt: skip
    return pd.DataFrame(rows), tests_table(ev)


def power_table(items: pd.DataFrame, models: dict[str, dict], gate: pd.DataFrame, rules: Rules,
                effect: float, condition: str = "instruct", reference: str = "baseline",
                metric: str = "bias", context: str = "ambig", n_tests: int = 1,
                seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """From a pilot run: per model, the standard error of `condition - reference` with template
    clustering and without it (items resampled alone), the design effect, the minimum
    detectable effect at the pilot's size, and the items per condition `effect` needs (two-
    sided alpha corrected for `n_tests` tests, 80% power)."""
    from selfcorrect.metrics.inference import items_needed

    part = items[(items["readout"] == rules.readout) & (items["round"] == 0)]
    eligible, excluded = _eligible(part, gate, rules.readout)
    ev = _Evidence(part, models, eligible, excluded, rules, seed)
    rows = []
    for m in sorted(set(part["model"]), key=ev.params):
        t = _paired_test(ev, "power", m, condition, reference, metric, context, False)
        if t is None:
            continue
        item_se = _item_level_se(ev, m, condition, reference, metric, context)
        se = t.est.se
        rows.append({
            "model": m, "gate": "passes" if m in eligible else f"excluded: {excluded[m]}",
            "contrast": f"{condition} - {reference}, {context} {metric}",
            "pilot_items": t.est.n_items, "templates": t.est.n_clusters,
            "estimate": t.est.value, "se": se, "se_items_alone": item_se,
            "design_effect": (se / item_se) ** 2 if item_se else math.nan,
            "mde_at_pilot": t.est.mde, "effect": effect, "tests_corrected_for": n_tests,
            "items_needed": items_needed(se, t.est.n_items, effect, n_tests, rules.alpha),
        })  # fmt: skip
    return pd.DataFrame(rows)


def _item_level_se(ev: _Evidence, model, condition, reference, metric, context) -> float:
    """The same contrast's bootstrap SE when every item is its own cluster."""
    from selfcorrect.metrics.bbq import counted

    d = ev.items
    uids = ev.uids(model, condition) & ev.uids(model, reference)
    frames = []
    for cond in (reference, condition):
        part = d[(d["model"] == model) & (d["condition"] == cond)
                 & (d["context_condition"] == context) & d["uid"].isin(uids)]  # fmt: skip
        frames.append(pd.DataFrame(counted(part.reset_index(drop=True)),
                                   index=part["uid"].to_numpy()).sort_index())  # fmt: skip
    a, b = _aligned(frames)
    est = paired_difference(a, b, _metric(metric, context), a.shape[0], ev.rules.bootstrap,
                            100, ev.seed)  # fmt: skip
    return est.se
