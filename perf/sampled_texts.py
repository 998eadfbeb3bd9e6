"""Whether sampled reasoning repeats: the sampled turns two stores share (same model,
benchmark, condition, item and step, so the same per-turn seed, engine.sample_key), how many
texts are identical, how far they agree before they part (characters of common prefix), and
how often the answers read after them agree. The seed fixes the draws, not the logits they are
drawn from: where a bf16 model's logits round differently (another batch composition or CPU),
a text parts at the first draw that falls across a changed boundary. `--split` groups the
first store's turns by when they were made (UTC, e.g. the hour a run moved to another CPU).

    python perf/sampled_texts.py STORE_A STORE_B [--split 2026-12-07T22:53] [--json out.json]"""

from __future__ import annotations

import argparse
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


def summary(both: pd.DataFrame) -> dict:
    prefix = np.array([len(os.path.commonprefix([a, b]))
                       for a, b in zip(both["text_a"], both["text_b"], strict=True)])  # fmt: skip
    length = both["text_b"].str.len().to_numpy()
    q = (lambda x: [float(v) for v in np.quantile(x, [0.25, 0.5, 0.75])]) if len(both) else list
    return {"turns": len(both), "identical": int((both["text_a"] == both["text_b"]).sum()),
            "common_prefix_chars_q25_q50_q75": q(prefix), "text_chars_q25_q50_q75": q(length),
            "answers_compared": int(both["pred_a"].notna().sum()),
            "same_answer": int((both["pred_a"] == both["pred_b"]).sum())}  # fmt: skip


def compare(a: Path, b: Path, split: datetime | None) -> dict:
    ta, tb = turns(a), turns(b)
    both = ta.merge(tb, on=[*KEYS, "step"], suffixes=("_a", "_b"))
    # the answer read after each reasoning (one per item and condition here: 1 sample)
    preds = [answers(s, ", ".join([*KEYS, "pred"])).groupby(KEYS)["pred"].first() for s in (a, b)]
    both = both.join(preds[0].rename("pred_a"), on=KEYS).join(preds[1].rename("pred_b"), on=KEYS)
    out = {"store_a": str(a), "store_b": str(b), "all": summary(both)}
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
