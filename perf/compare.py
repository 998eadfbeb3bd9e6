"""What the perf scripts that compute the same answers two ways share: reading a store's
answers, the per-answer spread of two stores' log-probabilities, printing and saving the
result."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd


def answers(store: Path, columns: str) -> pd.DataFrame:
    with sqlite3.connect(f"file:{store / 'results.sqlite'}?mode=ro", uri=True) as c:
        return pd.read_sql_query(f"SELECT {columns} FROM answers", c)


def logprob_spread(left, right) -> np.ndarray:
    """Per answer, the largest |difference| of its options' stored log-probabilities (JSON
    lists); answers without them in either store (generation readouts) are left out."""
    return np.array([np.abs(np.subtract(json.loads(x), json.loads(y))).max()
                     for x, y in zip(left, right, strict=True)
                     if isinstance(x, str) and isinstance(y, str)])  # fmt: skip


def emit(result: dict, path: Path | None) -> None:
    print(json.dumps(result, indent=2))
    if path:
        path.write_text(json.dumps(result, indent=2))
