"""What a benchmark contributes to a report: its headline table, its blocks and its figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from selfcorrect.report.render import Block

Tables = dict[str, pd.DataFrame]


@dataclass(frozen=True)
class Section:
    headline: Callable[[pd.DataFrame], pd.DataFrame]  # summary -> the short results table
    blocks: Callable[[Tables], list[Block]]  # the benchmark's part of a report page
    figures: Callable[[Tables, dict[str, dict], Path], list[Path]]  # tables, models, folder
    notes: Callable[[Tables], list[str]] = lambda tables: []  # plain words for the terminal
