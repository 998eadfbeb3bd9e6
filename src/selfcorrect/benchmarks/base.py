"""What every benchmark hands to the rest of the pipeline: frozen items and a small interface."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pandas as pd


@dataclass(frozen=True)
class Item:
    """One benchmark item. `fields` fill the condition texts, `candidates` are the continuations
    the log-probability readout scores, `meta` is what the metrics need."""

    benchmark: str
    uid: str
    category: str
    fields: Mapping[str, str]
    candidates: tuple[str, ...]
    gold: int
    meta: Mapping[str, Any] = field(default_factory=dict)


class Benchmark(Protocol):
    name: str
    family: str  # the condition library's section (variants share their family's texts)
    description: str

    def categories(self) -> list[str]: ...

    def items(self, categories: Sequence[str] | None = None) -> list[Item]: ...

    def sample(self, items: list[Item], limit: int | None, seed: int) -> list[Item]: ...

    def item_table(self, items: Sequence[Item]) -> pd.DataFrame: ...

    def score(self, outcomes: pd.DataFrame, **options: Any) -> dict[str, pd.DataFrame]: ...
