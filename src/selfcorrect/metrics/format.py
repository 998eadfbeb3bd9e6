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
