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
