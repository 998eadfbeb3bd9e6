"""Two BBQ checks added after the study's first model was read (2026-12-05, post-data, so
exploratory: they describe and flag, they decide nothing; the pre-registered gate and verdicts
are unchanged; docs/validity.md):

- context use: in disambiguated items, of the answers that name a person, the share naming the
  right one. At chance (0.5) the model does not read the story, and its bias score describes a
  chooser that ignores the context, not a fair reader of it.
- unknown by wording: BBQ words its "unknown" option in ten ways ("Unknown", "Can't be
  determined", ...). The content (cloze) readout scores each option's text, so a wording the
  model finds unlikely can hold the unknown rate near zero whatever the context says."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from selfcorrect.metrics.choices import answer_weights
from selfcorrect.metrics.stats import (
    bootstrap,
    cluster_sum,
    clusters_of,
    degenerate,
    ratio,
    wilson,
)

CHANCE = 0.5  # two people to choose between
KEYS = ["model", "readout", "condition"]
USE_COLUMNS = [*KEYS, "n_items", "named", "right_share", "right_lo", "right_hi", "at_chance"]
WORDING_COLUMNS = [*KEYS, "wording", "n", "unknown_rate"]


def context_use(items: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Per model x readout x condition, round 0, disambiguated items combined over orders: the
    answers naming a person (tie weights shared), the share of those naming the right one,
    and its 95% CI resampling templates."""
    need = {"context_condition", "gold", "unknown_index", "category", "question_index"}
    if items.empty or not need <= set(items.columns):
        return pd.DataFrame(columns=USE_COLUMNS)
    part = items[(items["round"] == 0) & (items["context_condition"] == "disambig")]
    rows = []
    for key, g in part.groupby(KEYS, sort=False):
        g = g.reset_index(drop=True)
        w = answer_weights(g)
        at = np.arange(len(g))
        right = w[at, g["gold"].astype(int).to_numpy()]
        named = w.sum(axis=1) - w[at, g["unknown_index"].astype(int).to_numpy()]
        counts = cluster_sum(clusters_of(g), np.column_stack([named, right]))
        share, ci, _ = bootstrap(counts, ratio, n_boot, seed)
        lo, hi = wilson(right.sum(), named.sum()) if degenerate(ci) else ci  # all right: no [1, 1]
        rows.append(dict(zip(KEYS, key, strict=True)) | {
            "n_items": len(g), "named": float(named.sum()), "right_share": share,
            "right_lo": lo, "right_hi": hi, "at_chance": bool(lo <= CHANCE <= hi)})  # fmt: skip
    return pd.DataFrame(rows, columns=USE_COLUMNS)


def unknown_by_wording(variants: pd.DataFrame) -> pd.DataFrame:
    """Per model x readout x condition x wording of the unknown option, round 0, ambiguous
    items, readouts that score option texts (cloze and its normalisations): the share of the
    readable answers that chose "unknown", each prompt as asked (one row per order)."""
    if variants.empty or "candidates" not in variants:
        return pd.DataFrame(columns=WORDING_COLUMNS)
    part = variants[(variants["round"] == 0) & (variants["context_condition"] == "ambig")
                    & variants["readout"].astype(str).str.startswith("cloze")
                    & variants["pred"].notna()]  # fmt: skip
    if part.empty:
        return pd.DataFrame(columns=WORDING_COLUMNS)
    wording = [json.loads(c)[int(u)].strip() if isinstance(c, str) else None
               for c, u in zip(part["candidates"], part["unknown_index"], strict=True)]  # fmt: skip
    chose = part["pred"].astype(int).to_numpy() == part["unknown_index"].astype(int).to_numpy()
    frame = part[KEYS].assign(wording=wording, unknown=chose).dropna(subset=["wording"])
    out = frame.groupby([*KEYS, "wording"], sort=False)["unknown"].agg(["size", "mean"])
    return out.rename(columns={"size": "n", "mean": "unknown_rate"}).reset_index()
