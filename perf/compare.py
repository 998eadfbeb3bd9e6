"""What the perf scripts that compute the same answers two ways share: loading a packaged
model's transformers backend, reading a store's answers, the per-answer spread of two stores'
log-probabilities, printing and saving the result."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd


def load_backend(model: str, dtype: str):
    """The transformers backend of a packaged model (name or alias) in `dtype`."""
    from selfcorrect.backends.base import LoadOptions
    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.registry import resolve

    return TransformersBackend.from_options(resolve(model), LoadOptions(dtype))


def connect(store: Path) -> sqlite3.Connection:
    """A store's database, read-only."""
    return sqlite3.connect(f"file:{store / 'results.sqlite'}?mode=ro", uri=True)


def answers(store: Path, columns: str) -> pd.DataFrame:
    with connect(store) as c:
        return pd.read_sql_query(f"SELECT {columns} FROM answers", c)


def logprob_spread(left, right) -> np.ndarray:
    """Per answer, the largest |difference| of its options' stored log-probabilities (JSON
    lists); answers without them in either store (generation readouts) are left out."""
    return np.array([np.abs(np.subtract(json.loads(x), json.loads(y))).max()
                     for x, y in zip(left, right, strict=True)
                     if isinstance(x, str) and isinstance(y, str)])  # fmt: skip


def agreement(left: pd.DataFrame, right: pd.DataFrame) -> dict:
    """Two stores' answers (`pred`, `logprobs`, indexed by the same keys) side by side: how
    many agree, and the spread of their log-probabilities (median, 95th percentile, max)."""
    both = left.merge(right, left_index=True, right_index=True, suffixes=("_a", "_b"))
    same = both["pred_a"] == both["pred_b"]
    diffs = logprob_spread(both["logprobs_a"], both["logprobs_b"])
    return {"answers": len(both), "agree": int(same.sum()),
            "agree_share": round(float(same.mean()), 4),
            "max_abs_dlogprob_median": round(float(np.median(diffs)), 3),
            "max_abs_dlogprob_p95": round(float(np.quantile(diffs, 0.95)), 3),
            "max_abs_dlogprob_max": round(float(diffs.max()), 3)}  # fmt: skip


def emit(result: dict, path: Path | None) -> None:
    print(json.dumps(result, indent=2))
    if path:
        path.write_text(json.dumps(result, indent=2))
