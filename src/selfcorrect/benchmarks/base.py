"""What every benchmark hands to the rest of the pipeline: frozen items and a small interface."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Item:
    """One benchmark item. `fields` fill the condition texts, `candidates` are the continuations
    the log-probability readout scores (`cloze`: the options' text, for the content readout),
    `meta` is what the metrics need."""

    benchmark: str
    uid: str
    category: str
    fields: Mapping[str, str]
    candidates: tuple[str, ...]
    gold: int
    meta: Mapping[str, Any] = field(default_factory=dict)
    cloze: tuple[str, ...] = ()  # the options' own words, for the content readout

    def continuations(self, readout: str) -> tuple[str, ...]:
        """What a log-probability readout scores: the letters, or (cloze) the options' text."""
        return (self.cloze or self.candidates) if readout == "cloze" else self.candidates


class Benchmark(Protocol):
    name: str
    family: str  # the condition library's section (variants share their family's texts)
    description: str
    fields: tuple[str, ...]  # the item fields condition texts may use as {placeholders}

    def categories(self) -> list[str]: ...

    def items(self, categories: Sequence[str] | None = None) -> list[Item]: ...

    def sample(self, items: list[Item], limit: int | None, seed: int) -> list[Item]: ...

    def item_table(self, items: Sequence[Item]) -> pd.DataFrame:
        """One row per item: the metadata its metrics need (stored with the results)."""
        ...

    def parse(self, item: Item, text: str) -> tuple[int | None, str]:
        """The generation readout: (the chosen candidate or None, a parse status)."""
        ...

    def variants(self, items: Sequence[Item], permute: str, **options) -> list[Item]:
        """Each item under every option order of `permute` (benchmarks without an option
        order return the items as they are) or every counterfactual version its benchmark
        asks (`counterfactual_mode`); an item's variants are adjacent."""
        ...


PERMUTE = ("none", "cyclic", "all")


def orders(permute: str, n: int = 3) -> list[tuple[int, ...]]:
    """Option orders for `permute`: a tuple o shows original option o[j] at position j. The
    identity comes first; cyclic = the n rotations, all = every order."""
    if permute not in PERMUTE:
        raise ValueError(f"unknown permutation scheme {permute!r}")
    ident = tuple(range(n))
    if permute == "none":
        return [ident]
    if permute == "cyclic":
        return [ident[k:] + ident[:k] for k in range(n)]
    return [ident, *(p for p in itertools.permutations(ident) if p != ident)]


def variant_uid(uid: str, order: tuple[int, ...]) -> str:
    """The identity order keeps the item's uid, so runs with and without permutation share it."""
    if order == tuple(range(len(order))):
        return uid
    return f"{uid}~{''.join(map(str, order))}"


def stratified_sample(items: Sequence[Item], limit: int | None, seed: int, strata) -> list[Item]:
    """`limit` items spread evenly over the strata (remainder to the first cells). Each cell is
    shuffled with its own seeded generator and the first items taken, so samples are nested:
    a larger limit keeps every item of a smaller one (results already stored are reused and
    conditions run at different limits share items). Ordered by the uid order of `items`."""
    if limit is None or limit >= len(items):
        return list(items)
    cells: dict[tuple, list[int]] = {}
    for i, item in enumerate(items):
        cells.setdefault(strata(item), []).append(i)
    keys = sorted(cells)
    quota = {k: limit // len(keys) for k in keys}
    for k in keys[: limit % len(keys)]:
        quota[k] += 1
    order = {
        k: np.random.default_rng([seed, n]).permutation(cells[k]).tolist()
        for n, k in enumerate(keys)
    }
    chosen: list[int] = []
    spare = 0
    for k in keys:
        take = min(quota[k], len(order[k]))
        spare += quota[k] - take
        chosen.extend(order[k][:take])
    if spare:  # small cells could not fill their quota: top up from the rest, still seeded
        rest = sorted(set(range(len(items))) - set(chosen))
        extra = np.random.default_rng([seed, len(keys)]).permutation(rest)[:spare]
        chosen.extend(extra.tolist())
    return [items[i] for i in sorted(chosen)]
