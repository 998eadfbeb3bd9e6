"""Whether sampled reasoning repeats: the sampled turns two stores share (same model,
benchmark, condition, item and step, so the same per-turn seed, engine.sample_key), how many
texts are identical, how far they agree before they part (characters of common prefix), and
how often the answers read after them agree (the chosen option's text, case-folded, so "Yes"
and "yes" agree). The seed fixes the draws, not the logits they are drawn from. As a baseline
for the prefix, each turn of the second store is also set against the first store's turn of
another item (the next one in uid order: another seed and prompt). `--split` groups the first
store's turns by when they were made (UTC, e.g. the hour a run moved to another CPU).

    python perf/sampled_texts.py STORE_A STORE_B [--split 2026-12-07T22:53] [--json out.json]"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from compare import answers, connect, emit  # perf/, beside this script

KEYS = ["model", "benchmark", "condition", "uid"]


def turns(store: Path) -> pd.DataFrame:
    with connect(store) as c:
        return pd.read_sql_query(f"SELECT {', '.join(KEYS)}, step, text, created FROM turns", c)


def prefixes(left: pd.Series, right: pd.Series) -> np.ndarray:
    return np.array([len(os.path.commonprefix([a, b]))
                     for a, b in zip(left, right, strict=True)])  # fmt: skip


def quartiles(x: np.ndarray) -> list[float]:
    return [float(v) for v in np.quantile(x, [0.25, 0.5, 0.75])] if len(x) else []


def summary(both: pd.DataFrame) -> dict:
    both = both.sort_values([*KEYS, "step"])
    other = pd.Series(np.roll(both["text_a"].to_numpy(), -1))  # the next item's, wrapping
    return {"turns": len(both), "identical": int((both["text_a"] == both["text_b"]).sum()),
            "identical_uids": sorted(both.loc[both["text_a"] == both["text_b"], "uid"]),
            "common_prefix_chars_q25_q50_q75": quartiles(prefixes(both["text_a"], both["text_b"])),
            "baseline_other_item_prefix_chars_q25_q50_q75":
                quartiles(prefixes(other, both["text_b"])),
            "text_chars_q25_q50_q75": quartiles(both["text_b"].str.len().to_numpy()),
            "answers_compared": int(both["answer_a"].notna().sum()),
            "same_answer": int((both["answer_a"] == both["answer_b"]).sum())}  # fmt: skip


def chosen(store: Path) -> pd.Series:
    """Per item, the text of the option its (first) answer chose, case-folded."""
    d = answers(store, ", ".join([*KEYS, "candidates", "pred"])).dropna(subset=["pred"])
    d["answer"] = [json.loads(c)[int(p)].strip().casefold()
                   for c, p in zip(d["candidates"], d["pred"], strict=True)]  # fmt: skip
    return d.groupby(KEYS)["answer"].first()


def compare(a: Path, b: Path, split: datetime | None) -> dict:
    ta, tb = turns(a), turns(b)
    both = ta.merge(tb, on=[*KEYS, "step"], suffixes=("_a", "_b"))
    # the answer read after each reasoning (one per item and condition here: 1 sample)
    both = both.join(chosen(a).rename("answer_a"), on=KEYS)
    both = both.join(chosen(b).rename("answer_b"), on=KEYS)
    out = {"store_a": str(a.resolve()), "store_b": str(b.resolve()),
           "split": split.isoformat() if split else None, "all": summary(both)}  # fmt: skip
    if split:
        cut = split.replace(tzinfo=UTC).timestamp()
        out[f"a before {split:%Y-%m-%d %H:%M} UTC"] = summary(both[both["created_a"] < cut])
        out[f"a from {split:%Y-%m-%d %H:%M} UTC"] = summary(both[both["created_a"] >= cut])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store_a", type=Path)
    ap.add_argument("store_b", type=Path)
    ap.add_argument("--split", type=datetime.fromisoformat, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    emit(compare(args.store_a, args.store_b, args.split), args.json)


if __name__ == "__main__":
    main()
