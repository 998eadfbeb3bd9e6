"""How an estimate with its confidence interval is written, in tables, verdicts and figures."""

from __future__ import annotations

import math


def fmt_ci(value: float, lo: float, hi: float, scale: float = 1.0, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    core = f"{value * scale:.{digits}f}"
    if lo is None or math.isnan(lo) or math.isnan(hi):
        return core
    return f"{core} [{lo * scale:.{digits}f}, {hi * scale:.{digits}f}]"


def fmt_p(p: float) -> str:
    """A p-value as the study's tables print it: two significant digits, 1.2e-04 below 0.001."""
    return "n/a" if p != p else f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def fmt_ci_column(df, col: str, lo: str | None = None, hi: str | None = None,
                  scale: float = 1.0, digits: int = 1) -> list[str]:  # fmt: skip
    """fmt_ci row by row over a table's estimate column and its bounds (default col_lo and
    col_hi)."""
    lows, highs = df[lo or f"{col}_lo"], df[hi or f"{col}_hi"]
    return [fmt_ci(v, a, b, scale, digits) for v, a, b in zip(df[col], lows, highs, strict=True)]
