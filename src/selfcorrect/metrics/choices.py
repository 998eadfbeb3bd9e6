"""Multiple-choice answers, read for what the model means (docs/validity.md):

- `expand_cloze`: the content readout's named normalisations (lm-evaluation-harness's): `cloze`
  sums the log-probabilities of an option's tokens, `cloze/token` divides by its token count,
  `cloze/byte` by its UTF-8 length.
- `combine_orders`: an item asked under several option orders becomes one answer: position
  probabilities are mapped back to the options' content and averaged over orders (probability
  readouts), or the content answers vote (generation; the vote shares are stored as its
  probabilities); an exact tie is stored as "tie", with no single answer and the tied options
  in `tied`; metrics count it as 1/k of each tied option (no preference among them). A model
  that names the same letter under all three cyclic orders so ties exactly and scores chance:
  always for generation votes; for probability readouts only when its letter distribution is
  the same under every order (close to it, it still leans on small differences).
- `diagnostics` and `gate`: whether a model answers by content or by letter, and the stated
  rules that mark a model x readout as not following the format."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from selfcorrect.engine import SYSTEM_SUFFIX, system_of
from selfcorrect.metrics.runs import RUN_KEYS

TIE = "tie"
CLOZE_NORMS = {"cloze/token": "tokens", "cloze/byte": "bytes"}
LETTER_READOUTS = ("logprob", "generate")  # readouts that name an option by its position
# The validity gate (docs/validity.md), fixed before any data of the study it is used in.
GATE = {
    "position_consistency_min": 0.5,  # permuted runs: same content answer under every order
    "top_letter_max": 0.8,  # share of answers at the most chosen position
    "oracle_accuracy_min": 0.6,  # told the answer, it gives it (chance: 1/3)
    "unparseable_max": 0.5,  # generation readout
    "option_mass_min": 0.1,  # letter log-probabilities: mass on the three options
}


def answer_weights(df: pd.DataFrame) -> np.ndarray:
    """(rows, 3): 1 on the chosen option; 1/k on each of k options tied over orders (no
    preference among them); 0 everywhere for an answer that could not be read."""
    pred = df["pred"].astype("Int64")
    w = np.zeros((len(df), 3))
    parsed = pred.notna().to_numpy()
    w[np.flatnonzero(parsed), pred[parsed].to_numpy(dtype=int)] = 1.0
    if "tied" in df:
        for i, t in enumerate(df["tied"]):
            if isinstance(t, str) and not parsed[i]:
                opts = json.loads(t)
                w[i, opts] = 1.0 / len(opts)
    return w


def _lists(col: pd.Series) -> list:
    return [json.loads(v) if isinstance(v, str) else v for v in col]


def _softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def expand_cloze(df: pd.DataFrame) -> pd.DataFrame:
    """Adds the per-token and per-byte rows of every `cloze` answer."""
    if "readout" not in df or not (df["readout"] == "cloze").any() or "logprobs" not in df:
        return df
    part = df[df["readout"] == "cloze"]
    lps = np.array(_lists(part["logprobs"]), dtype=float)
    sizes = {
        "bytes": np.array([[len(c.encode()) for c in cs] for cs in _lists(part["candidates"])]),
    }
    toks = _lists(part["n_tokens"]) if "n_tokens" in part else []
    if toks and all(t is not None for t in toks):
        sizes["tokens"] = np.array(toks, dtype=float)
    extra = []
    for name, kind in CLOZE_NORMS.items():
        if kind in sizes:
            probs = _softmax(lps / np.maximum(sizes[kind], 1))
            as_json = [json.dumps(p.tolist()) for p in probs]
            pred = pd.array(probs.argmax(axis=1), dtype="Int64")
            extra.append(part.assign(readout=name, probs=as_json, pred=pred))
    return pd.concat([df, *extra], ignore_index=True)


def _orders(df: pd.DataFrame) -> np.ndarray:
    raw = df["order"] if "order" in df else pd.Series("012", index=df.index)
    return np.array([[int(c) for c in str(o)] if isinstance(o, str) else [0, 1, 2]
                     for o in raw.fillna("012")])  # fmt: skip


def _base(df: pd.DataFrame) -> pd.Series:
    if "base_uid" not in df:
        return df["uid"]
    return df["base_uid"].where(df["base_uid"].notna(), df["uid"])


def content_answers(df: pd.DataFrame) -> np.ndarray:
    """Each row's answer as an original option index (-1 when it has none)."""
    orders = _orders(df)
    pred = df["pred"].astype("Int64").fillna(-1).to_numpy(dtype=int)
    out = np.full(len(df), -1)
    ok = pred >= 0
    out[ok] = orders[np.flatnonzero(ok), pred[ok]]
    return out


def _order_labels(df: pd.DataFrame) -> pd.Series:
    """Each row's option order as a label ("012", "120", ...)."""
    return pd.Series(["".join(map(str, o)) for o in _orders(df)], index=df.index)


def _orders_per_item(df: pd.DataFrame) -> pd.Series:
    """For each row, how many distinct orders its item was asked under in its run."""
    keys = [df[k] for k in RUN_KEYS] + [_base(df).rename("_base")]
    return _order_labels(df).groupby(keys).transform("nunique")


def _is_identity(df: pd.DataFrame) -> np.ndarray:
    """Rows asked under the item's original option order (every sampled reasoning of it)."""
    return (_orders(df) == [0, 1, 2]).all(axis=1)


def split_designs(variants: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the answers the metrics read, the answers the validity diagnostics read).

    Conditions and rounds are compared within a model x readout and models with each other,
    so every answer compared must come from the same design: where a readout holds items
    asked under different numbers of option orders (a permuted gate sample beside runs in the
    original order, for any model, or an item whose orders are not all stored yet), the
    metrics read every item of that readout, for every model, in its original order only. The
    diagnostics read, per model x condition x readout x round, the items asked under several
    orders where there are any (the gate sample), else every item."""
    if variants.empty:
        return variants, variants
    v = variants.reset_index(drop=True)
    n_orders = _orders_per_item(v)
    mixed = n_orders.groupby(v["readout"]).transform("nunique") > 1
    metric = v[~mixed.to_numpy() | _is_identity(v)]
    multi = n_orders.groupby([v[k] for k in RUN_KEYS]).transform("max") > 1
    gate = v[~multi.to_numpy() | (n_orders > 1).to_numpy()]
    return metric.reset_index(drop=True), gate.reset_index(drop=True)


def order_readings(gate: pd.DataFrame, gate_items: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The readout comparison's two readings of the items asked under several orders (round
    0): "combined", their answers combined over the orders (the items of `gate_items` =
    combine_orders(gate)), and "original only", the original order alone (the same answers,
    read without the permutation); empty when no item was asked under several orders."""
    if gate.empty:
        return {}
    g = gate[(gate["round"] == 0).to_numpy() & (_orders_per_item(gate) > 1).to_numpy()]
    if g.empty:
        return {}
    return {"combined": gate_items[(gate_items["round"] == 0) & (gate_items["n_orders"] > 1)],
            "original only": combine_orders(g[_is_identity(g)])}  # fmt: skip


def orders_compared(readings: dict[str, pd.DataFrame], summarise) -> pd.DataFrame:
    """Each reading of order_readings summarised (`summarise`: a level table, or paired
    differences against the reference), labelled in the column `orders`."""
    if not readings:
        return pd.DataFrame()
    return pd.concat([summarise(d).assign(orders=name) for name, d in readings.items()],
                     ignore_index=True)  # fmt: skip


def combine_orders(df: pd.DataFrame) -> pd.DataFrame:
    """One row per item x run: its answer over every order it was asked under, the item's
    positions (gold, UNKNOWN, target) in its original order, and `n_orders`."""
    df = df.reset_index(drop=True)
    base = _base(df)
    orders = _orders(df)
    if len(df) == 0 or (base == df["uid"]).all() and (orders == [0, 1, 2]).all():
        return df.assign(n_orders=1)
    keys = [*RUN_KEYS, "_base"]
    work = df.assign(_base=base.to_numpy())
    codes, uniques = pd.factorize(pd.MultiIndex.from_frame(work[keys]))
    n_groups = len(uniques)
    first = pd.Series(np.arange(len(df))).groupby(codes).first().to_numpy()
    out = work.iloc[first].reset_index(drop=True)
    o_first = orders[first]
    for col in ("gold", "unknown_index", "target_loc"):  # positions -> original options
        if col in out:
            v = out[col].astype("Int64")
            mapped = [
                pd.NA if pd.isna(x) else int(o[int(x)]) for x, o in zip(v, o_first, strict=True)
            ]
            out[col] = pd.array(mapped, dtype="Int64")
    out["uid"] = out["_base"]
    out["order"] = "012"
    # distinct orders (an item's sampled reasonings are several rows under one order)
    labels = _order_labels(df)
    out["n_orders"] = labels.groupby(codes).nunique().reindex(range(n_groups)).to_numpy()
    out["pred"], out["parse_status"], out["probs"], out["tied"] = _vote(df, codes, n_groups, orders)
    return out.drop(columns=["_base"])


def _vote(df, codes, n_groups, orders):
    has_probs = df["probs"].notna().to_numpy() if "probs" in df else np.zeros(len(df), bool)
    content = np.zeros((n_groups, 3))
    if has_probs.any():  # probability readouts: average the content distributions
        idx = np.flatnonzero(has_probs)
        p = np.array(_lists(df["probs"].iloc[idx]), dtype=float)
        mapped = np.zeros_like(p)
        mapped[np.arange(len(idx))[:, None], orders[idx]] = p
        np.add.at(content, codes[idx], mapped)
    answers = content_answers(df)
    votes = np.zeros((n_groups, 3))
    ok = (answers >= 0) & ~has_probs
    np.add.at(votes, (codes[ok], answers[ok]), 1)  # generation: content answers vote
    total = content + votes
    top = total.max(axis=1)
    best = total.argmax(axis=1)
    at_top = np.isclose(total, top[:, None], rtol=0, atol=1e-12) & (top[:, None] > 0)
    tie = at_top.sum(axis=1) > 1
    none = top <= 0
    tied = [
        json.dumps(np.flatnonzero(t).tolist()) if k else None
        for t, k in zip(at_top, tie, strict=True)
    ]
    pred = pd.array(np.where(tie | none, -1, best), dtype="Int64")
    pred[tie | none] = pd.NA
    statuses = pd.Series(df.get("parse_status", pd.Series("ok", index=df.index)).to_numpy())
    fallback = statuses.groupby(codes).agg(lambda s: s.mode().iloc[0]).to_numpy()
    status = np.where(tie, TIE, np.where(none, fallback, "ok"))
    counts = np.bincount(codes[has_probs], minlength=n_groups)
    # generation: the vote shares over the orders that gave an answer stand as its distribution
    shares = votes / np.maximum(votes.sum(axis=1, keepdims=True), 1)
    probs = [
        json.dumps((c / k).tolist()) if k else json.dumps(v.tolist()) if v.sum() > 0 else None
        for c, k, v in zip(content, counts, shares, strict=True)
    ]
    return pred, status, probs, tied


def diagnostics(variants: pd.DataFrame, combined: pd.DataFrame) -> pd.DataFrame:
    """Per model x condition x readout x round: where the answers sit (letter shares), whether
    the same content is chosen under every order, the probability mass on the options, and
    the UNKNOWN, unparseable and tie rates."""
    rows = []
    answers = content_answers(variants)
    base = _base(variants)
    for key, part in variants.groupby(RUN_KEYS, sort=True):
        idx = part.index.to_numpy()
        pred = part["pred"].astype("Int64")
        parsed = pred.notna()
        shares = pred[parsed].value_counts(normalize=True).reindex(range(3), fill_value=0.0)
        row = dict(zip(RUN_KEYS, key, strict=True))
        row |= {"n_items": int(base.loc[idx].nunique()), "n_asked": len(part)}
        row |= {f"share_{'abc'[j]}": float(shares[j]) for j in range(3)}
        row["top_letter_share"] = float(shares.max()) if parsed.any() else math.nan
        row["position_consistency"] = _consistency(answers[idx], base.loc[idx].to_numpy(),
                                                   _order_labels(part).to_numpy())  # fmt: skip
        row["sample_agreement"] = _sample_agreement(part, answers[idx], base.loc[idx])
        row["option_mass"] = _mass(part) if key[2] == "logprob" else math.nan
        row["unparseable_rate"] = float((~parsed).mean())
        c = combined[(combined[RUN_KEYS] == pd.Series(key, index=RUN_KEYS)).all(axis=1)]
        rows.append(row | _combined_rates(c))
    return pd.DataFrame(rows)


def _consistency(answers: np.ndarray, base: np.ndarray, order: np.ndarray) -> float:
    """Share of items asked under two or more option orders whose content answer is the same
    (and given) under all of them (every sampled reasoning too); NaN when no item was asked
    under two orders (several samples in one order are no position test)."""
    frame = pd.DataFrame({"base": base, "a": answers, "order": order})
    g = frame.groupby("base")["a"]
    multi = frame.groupby("base")["order"].nunique() >= 2
    if not multi.any():
        return math.nan
    same = (g.nunique() == 1) & (g.min() >= 0)
    return float(same[multi].mean())


def _sample_agreement(part: pd.DataFrame, answers: np.ndarray, base: pd.Series) -> float:
    """Share of (item, order) asked with 2+ sampled reasonings whose answers agree: the
    spread between samples; NaN without samples."""
    if "sample" not in part or not (part["sample"].fillna(0) > 0).any():
        return math.nan
    order = part["order"] if "order" in part else pd.Series("012", index=part.index)
    frame = pd.DataFrame({"key": list(zip(base, order, strict=True)), "a": answers})
    g = frame.groupby("key")["a"]
    multi = g.size() >= 2
    same = (g.nunique() == 1) & (g.min() >= 0)
    return float(same[multi].mean()) if multi.any() else math.nan


def _mass(part: pd.DataFrame) -> float:
    lps = [v for v in _lists(part["logprobs"]) if isinstance(v, list)] if "logprobs" in part else []
    if not lps:
        return math.nan
    return float(np.median(np.exp(np.array(lps, dtype=float)).sum(axis=1)))


def _combined_rates(c: pd.DataFrame) -> dict:
    """Over every combined item: accuracy with a tie as 1/k and an unreadable answer wrong;
    the UNKNOWN rate over the readable ones."""
    if c.empty:
        return {"unknown_rate": math.nan, "tie_rate": math.nan, "accuracy": math.nan}
    w = answer_weights(c)
    correct = w[np.arange(len(c)), c["gold"].astype(int).to_numpy()]
    return {
        "unknown_rate": unknown_rate(c, w),
        "tie_rate": float((c["parse_status"] == TIE).mean()) if "parse_status" in c else 0.0,
        "accuracy": float(correct.mean()),
    }


def unknown_rate(c: pd.DataFrame, weights: np.ndarray | None = None) -> float:
    """The share of UNKNOWN among the readable answers (a tie shares its weight); nan when
    none is readable. `weights` are c's answer_weights when the caller has them already."""
    if c.empty:
        return math.nan
    w = answer_weights(c) if weights is None else weights
    readable = w.sum(axis=1) > 0
    unknown = w[np.arange(len(c)), c["unknown_index"].astype(int).to_numpy()]
    return float(unknown[readable].mean()) if readable.any() else math.nan


def gate(validity: pd.DataFrame, reference: str = "baseline", oracle: str = "oracle"):
    """Per model x readout x system-prompt setting: "passes", "does not follow the format"
    (with the rules it broke), or "not assessed" (no round-0 answers under the reference
    condition with that setting)."""
    rows = []
    cols = ["model", "readout", "system", "verdict", "reasons"]
    v = validity[validity["round"] == 0] if not validity.empty else validity
    if v.empty:
        return pd.DataFrame(rows, columns=cols)
    v = v.assign(system=v["condition"].map(system_of))
    for (model, readout, system), part in v.groupby(["model", "readout", "system"], sort=True):
        tail = "" if system == "default" else f"{SYSTEM_SUFFIX}{system}"
        ref, orc_name = reference + tail, oracle + tail
        base = part[part["condition"] == ref]
        orc = part[part["condition"] == orc_name]
        row = {"model": model, "readout": readout, "system": system}
        if base.empty:
            rows.append(row | {"verdict": "not assessed", "reasons": f"no {ref} answers"})
            continue
        failed = _broken_rules(base.iloc[0], orc.iloc[0] if not orc.empty else None, readout)
        verdict = "does not follow the format" if failed else "passes"
        reasons = "; ".join(failed) or "every applicable rule holds"
        if orc.empty:  # a pass without the oracle check is a weaker pass: say so
            reasons += f"; oracle rule not applied (no {orc_name} answers)"
        pc = base.iloc[0]["position_consistency"]
        if not pc == pc:  # one option order (--permute none): nothing to compare
            reasons += "; position-consistency rule not applied (one option order)"
        rows.append(row | {"verdict": verdict, "reasons": reasons})
    return pd.DataFrame(rows, columns=cols)


def _broken_rules(b: pd.Series, orc: pd.Series | None, readout: str) -> list[str]:
    g, failed = GATE, []
    pc, top = b["position_consistency"], b["top_letter_share"]
    if pc == pc and pc < g["position_consistency_min"]:
        failed.append(f"position consistency {pc:.3f} < {g['position_consistency_min']}")
    if readout in LETTER_READOUTS and top == top and top > g["top_letter_max"]:
        failed.append(f"top letter share {top:.3f} > {g['top_letter_max']}")
    if orc is not None:  # NaN: no readable oracle answer at all
        acc = orc["accuracy"]
        if not acc >= g["oracle_accuracy_min"]:
            failed.append(f"oracle accuracy {acc:.3f} < {g['oracle_accuracy_min']}")
    if readout == "generate" and b["unparseable_rate"] > g["unparseable_max"]:
        failed.append(f"unparseable {b['unparseable_rate']:.3f} > {g['unparseable_max']}")
    mass = b["option_mass"]
    if mass == mass and mass < g["option_mass_min"]:
        failed.append(f"option mass {mass:.3f} < {g['option_mass_min']}")
    return failed
