"""What identifies one evaluation run inside the outcomes table, shared by every metric."""

from __future__ import annotations

import pandas as pd

RUN_KEYS = ["model", "condition", "readout", "round"]


def with_run_keys(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with every run key present (defaults for tables scored outside a store, e.g.
    a predictions file)."""
    df = df.copy()
    for k, default in (("model", "-"), ("condition", "-"), ("readout", "-"), ("round", 0)):
        if k not in df.columns:
            df[k] = default
    return df
