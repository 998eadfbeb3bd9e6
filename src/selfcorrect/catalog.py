"""The benchmark registry: each benchmark registered once with everything it needs, checked
when registered. A kit is its loader (items, the answer parser), its metric tables, its report
section (headline, blocks, figures), what the verdicts read of it, and how predictions made
elsewhere are scored. Adding a benchmark: its modules, then one line in KITS."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from selfcorrect import predictions
from selfcorrect.benchmarks.base import Benchmark
from selfcorrect.benchmarks.bbq import BBQ
from selfcorrect.benchmarks.law import LawSchool
from selfcorrect.benchmarks.winogender import Winogender
from selfcorrect.errors import SelfCorrectError, unknown_choice
from selfcorrect.metrics.bbq import answers_by_item, bbq_tables
from selfcorrect.metrics.law import law_tables, p_yes
from selfcorrect.metrics.winogender import winogender_tables
from selfcorrect.report import bbq as bbq_report
from selfcorrect.report import law as law_report
from selfcorrect.report import winogender as winogender_report
from selfcorrect.report.section import Section

Tables = dict[str, pd.DataFrame]
_BENCHMARK_METHODS = ("categories", "items", "sample", "item_table", "parse", "variants")


@dataclass(frozen=True)
class BenchmarkKit:
    benchmark: Benchmark  # the loader: items, sampling, item table, answer parser
    tables: Callable[..., Tables]  # outcomes -> metric tables (n_boot, seed, reference, ...)
    section: Section  # its part of a report
    table_options: frozenset[str] = frozenset()  # options `tables` takes beyond the common ones
    verdict_items: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # answers per item
    # `selfcorrect score NAME FILE`: (file, benchmark) -> outcomes, for predictions made elsewhere
    predictions: Callable[[Path, Benchmark], pd.DataFrame] | None = None

    def __post_init__(self):
        b = self.benchmark
        missing = [m for m in _BENCHMARK_METHODS if not callable(getattr(b, m, None))]
        missing += [a for a in ("name", "family", "description", "fields")
                    if not getattr(b, a, None)]  # fmt: skip
        missing += [f"section.{p}" for p in ("headline", "blocks", "figures")
                    if not callable(getattr(self.section, p, None))]  # fmt: skip
        if not callable(self.tables):
            missing.append("tables")
        if missing:
            raise TypeError(f"benchmark kit {b!r} lacks: {', '.join(missing)}")

    @property
    def name(self) -> str:
        return self.benchmark.name

    @property
    def family(self) -> str:
        return self.benchmark.family

    def read_predictions(self, path: str | Path) -> pd.DataFrame:
        """An outcome table from a predictions file (see selfcorrect.predictions)."""
        if self.predictions is None:
            raise SelfCorrectError(f"scoring outside predictions is not available for {self.name}")
        return self.predictions(path, self.benchmark)


def items_only(outcomes: pd.DataFrame) -> pd.DataFrame:
    """One answer per item (combined over option orders): what the verdicts' tests read."""
    return answers_by_item(outcomes)[1]


KITS: dict[str, BenchmarkKit] = {
    kit.name: kit
    for kit in (
        BenchmarkKit(
            BBQ(),
            bbq_tables,
            bbq_report.SECTION,
            frozenset({"bias_variant", "unparseable"}),
            items_only,
            predictions=predictions.bbq_outcomes,
        ),  # fmt: skip
        BenchmarkKit(Winogender(), winogender_tables, winogender_report.SECTION),
        BenchmarkKit(Winogender(variant="all"), winogender_tables, winogender_report.SECTION),
        BenchmarkKit(
            LawSchool(),
            law_tables,
            law_report.SECTION,
            verdict_items=p_yes,
            predictions=predictions.law_outcomes,
        ),  # fmt: skip
    )
}


def get_kit(name: str) -> BenchmarkKit:
    if name not in KITS:
        raise unknown_choice("benchmark", name, KITS)
    return KITS[name]
