"""Uncertainty and convergence across self-correction rounds (methodology.md section 7).

Per answer: the entropy of its option distribution (nats), the probability of the gold answer,
and, where a gold answer exists, calibration: the Brier score (sum over options of (p - y)^2)
and the expected calibration error over 10 equal-width bins of the top probability (ECE = sum
over bins of n_bin / n * |accuracy_bin - mean top probability_bin|). For the generation readout
the semantic uncertainty is the entropy of the parsed answers over an item's sampled reasonings
and option orders. Every mean has a cluster-bootstrap CI over templates (students, occupations:
whatever the benchmark clusters on).

Convergence, per item over rounds 0..R: the first round from which its answer no longer
changes (and, separately, from which its distribution moves by at most `tol` in total
variation); per run the share converged by each round, the mean convergence round and the
wavering rate (items whose answer changes more than once)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from selfcorrect.metrics.runs import RUN_KEYS, with_run_keys
from selfcorrect.metrics.stats import bootstrap, cluster_sum, clusters_of, ratio

BINS = 10  # equal-width bins of the top probability, for the ECE
TOL = 0.05  # total-variation tolerance for distribution convergence


def _dist(df: pd.DataFrame) -> np.ndarray:
    """(rows, k) distributions; greedy or parsed answers one-hot; no answer: NaN row; a bare
    p(yes) (predictions made elsewhere) as (p, 1 - p)."""
    if "probs" not in df:
        if "p_yes" in df:
            p = df["p_yes"].to_numpy(float)
            return np.column_stack([p, 1 - p])
        df = df.assign(probs=None)
    k = max((len(json.loads(p)) for p in df["probs"] if isinstance(p, str)), default=3)
    out = np.full((len(df), k), np.nan)
    for i, (p, pred) in enumerate(zip(df["probs"], df["pred"], strict=True)):
        if isinstance(p, str):
            q = np.array(json.loads(p), dtype=float)
            out[i, : len(q)] = q / q.sum()
        elif not pd.isna(pred):
            out[i] = np.eye(k)[int(pred)]
    return out


def _entropy(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1)


def _ece(c: np.ndarray) -> np.ndarray:
    """c: summed [n_1..n_B, conf_1..conf_B, correct_1..correct_B]."""
    n, conf, acc = c[..., :BINS], c[..., BINS : 2 * BINS], c[..., 2 * BINS :]
    total = n.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.abs(acc - conf).sum(axis=-1) / total


def _row(part: pd.DataFrame, n_boot: int, seed: int) -> dict:
    p = _dist(part)
    ok = np.isfinite(p).all(axis=1)
    codes = clusters_of(part)[ok]
    p = p[ok]
    out = {"n": int(ok.sum())}
    ent = _entropy(p)
    sums = cluster_sum(codes, np.column_stack([np.ones(len(p)), ent]))
    val, (lo, hi), _ = bootstrap(sums, ratio, n_boot, seed)
    out |= {"entropy": val, "entropy_lo": lo, "entropy_hi": hi}
    gold = part["gold"].to_numpy()[ok] if "gold" in part else np.full(len(p), -1)
    has_gold = (gold >= 0) & (gold < p.shape[1]) if len(p) else np.zeros(0, bool)
    if has_gold.any():
        g = gold[has_gold].astype(int)
        q = p[has_gold]
        pg = q[np.arange(len(q)), g]
        y = np.eye(q.shape[1])[g]
        brier = ((q - y) ** 2).sum(axis=1)
        top = q.max(axis=1)
        correct = (q.argmax(axis=1) == g).astype(float)
        b = np.minimum((top * BINS).astype(int), BINS - 1)
        onehot = np.eye(BINS)[b]
        cl = codes[has_gold]
        for name, vals in (("p_gold", pg), ("brier", brier)):
            sums = cluster_sum(cl, np.column_stack([np.ones(len(q)), vals]))
            v, (lo, hi), _ = bootstrap(sums, ratio, n_boot, seed)
            out |= {name: v, f"{name}_lo": lo, f"{name}_hi": hi}
        ece_counts = np.column_stack([onehot, onehot * top[:, None], onehot * correct[:, None]])
        v, (lo, hi), _ = bootstrap(cluster_sum(cl, ece_counts), _ece, n_boot, seed)
        out |= {"ece": v, "ece_lo": lo, "ece_hi": hi}
    return out


def uncertainty(df: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per run (model x condition x readout x round): entropy, p(gold), Brier, ECE with CIs."""
    df = with_run_keys(df).reset_index(drop=True)
    rows = [{**dict(zip(RUN_KEYS, run, strict=True)), **_row(part, n_boot, seed)}
            for run, part in df.groupby(RUN_KEYS, sort=True)]  # fmt: skip
    return pd.DataFrame(rows)


def rounds_items(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of the items answered over feedback rounds: per model x condition x readout,
    every round of the uids that have a round above 0. Round 0 of the other items (a larger
    sample under the same condition, e.g. the study's powered part) is left out, so that each
    round is read on the same items."""
    df = with_run_keys(df)
    keys = ["model", "condition", "readout", "uid"]
    if df.empty or "uid" not in df or df["round"].max() == 0:
        return df.iloc[0:0]
    later = df.loc[df["round"] > 0, keys].drop_duplicates()
    return df.merge(later, on=keys, how="inner")


def uncertainty_tables(items: pd.DataFrame, n_boot: int, seed: int) -> dict[str, pd.DataFrame]:
    """uncertainty per run over every item answered, and (where rounds were run) per round
    over the rounds' items only: a round-0 mean over a larger sample is not comparable with
    the later rounds' means."""
    out = {"uncertainty": uncertainty(items, n_boot, seed)}
    over_rounds = rounds_items(items)
    if not over_rounds.empty:
        out["rounds_uncertainty"] = uncertainty(over_rounds, n_boot, seed)
    return out


def semantic_uncertainty(variants: pd.DataFrame) -> pd.DataFrame:
    """Generation readout: per run, the mean over items of the entropy (nats) of the parsed
    content answers across an item's sampled reasonings and option orders."""
    from selfcorrect.metrics.choices import _base, content_answers

    gen = variants[variants["readout"] == "generate"] if len(variants) else variants
    if gen.empty:
        return pd.DataFrame()
    gen = gen.assign(_a=content_answers(gen), _base=_base(gen).to_numpy())
    rows = []
    for run, part in gen.groupby(RUN_KEYS, sort=True):
        ents = []
        for _, g in part.groupby("_base"):
            a = g["_a"][g["_a"] >= 0]
            if len(g) >= 2 and len(a):
                q = a.value_counts(normalize=True).to_numpy()
                ents.append(float(-(q * np.log(q)).sum()))
        rows.append({**dict(zip(RUN_KEYS, run, strict=True)), "items": len(ents),
                     "semantic_entropy": float(np.mean(ents)) if ents else math.nan})  # fmt: skip
    return pd.DataFrame(rows)


def convergence(df: pd.DataFrame, tol: float = TOL) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per run: items, mean convergence round of the answer and of the distribution, wavering
    rate; per run and round: share of items converged by then). Runs with one round: none."""
    df = with_run_keys(df)
    keys = ["model", "condition", "readout"]
    if df.empty or df["round"].max() == 0:
        return pd.DataFrame(), pd.DataFrame()
    p = _dist(df)
    runs, by_round = [], []
    for run, part in df.assign(_i=np.arange(len(df))).groupby(keys, sort=True):
        rounds = int(part["round"].max())
        if rounds == 0:
            continue
        answer_r, dist_r, waver = [], [], []
        for _, g in part.sort_values("round").groupby("uid"):
            if len(g) != rounds + 1:
                continue
            a = g["pred"].astype("Int64").fillna(-1).to_numpy()
            changes = np.flatnonzero(a[1:] != a[:-1])
            answer_r.append(int(changes[-1] + 1) if changes.size else 0)
            waver.append(changes.size > 1)
            q = p[g["_i"].to_numpy()]
            tv = 0.5 * np.abs(q[1:] - q[:-1]).sum(axis=1)
            moving = np.flatnonzero(~(tv <= tol))
            dist_r.append(int(moving[-1] + 1) if moving.size else 0)
        if not answer_r:
            continue
        head = dict(zip(keys, run, strict=True))
        runs.append(head | {"items": len(answer_r), "rounds": rounds,
                            "mean_convergence_round": float(np.mean(answer_r)),
                            "mean_distribution_convergence_round": float(np.mean(dist_r)),
                            "wavering_rate": float(np.mean(waver))})  # fmt: skip
        for r in range(rounds + 1):
            by_round.append(head | {
                "round": r, "converged": float(np.mean(np.array(answer_r) <= r)),
                "distribution_converged": float(np.mean(np.array(dist_r) <= r)),
            })  # fmt: skip
    return pd.DataFrame(runs), pd.DataFrame(by_round)


def round_tables(items: pd.DataFrame, variants: pd.DataFrame | None = None, n_boot: int = 1000,
                 seed: int = 0,
                 branches: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:  # fmt: skip
    """The tables every benchmark adds: uncertainty per round, semantic uncertainty
    (generation), convergence, and exact transitions where branches were scored."""
    from selfcorrect.metrics.exact import exact_transitions

    conv, by_round = convergence(items)
    out = {**uncertainty_tables(items, n_boot, seed), "convergence": conv,
           "converged_by_round": by_round}  # fmt: skip
    sem = semantic_uncertainty(variants if variants is not None else items)
    if not sem.empty:
        out["semantic_uncertainty"] = sem
    if branches is not None and not branches.empty:
        out["exact_transitions"] = exact_transitions(
            variants if variants is not None else items, branches, n_boot, seed
        )
    return out
