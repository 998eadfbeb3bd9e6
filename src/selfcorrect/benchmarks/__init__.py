"""Benchmark registry: name -> loader. Adding a benchmark means adding a module here."""

from __future__ import annotations

from selfcorrect.benchmarks.base import Benchmark, Item
from selfcorrect.benchmarks.bbq import BBQ
from selfcorrect.errors import unknown_choice

BENCHMARKS: dict[str, type] = {"bbq": BBQ}


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise unknown_choice("benchmark", name, BENCHMARKS)
    return BENCHMARKS[name]()


__all__ = ["BENCHMARKS", "Benchmark", "Item", "get_benchmark"]
