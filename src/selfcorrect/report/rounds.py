"""Feedback rounds in a report: flips and transition counts between consecutive rounds (any
benchmark whose tables have them)."""

from __future__ import annotations

import pandas as pd

from selfcorrect.report.render import Block
from selfcorrect.report.section import Tables


def blocks(tables: Tables) -> list[Block]:
    flips = tables.get("flips", pd.DataFrame())
    if flips.empty:
        return []
    return [
        ("h2", "Self-correction rounds: flips between consecutive rounds"),
        ("table", flips),
        ("h2", "Transition counts (from -> to)"),
        ("table", tables["transitions"]),
    ]
