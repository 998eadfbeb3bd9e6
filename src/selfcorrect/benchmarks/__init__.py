"""Benchmark registry: name -> loader. Adding a benchmark means adding a module here."""

from __future__ import annotations

from selfcorrect.benchmarks.base import Benchmark, Item
from selfcorrect.benchmarks.bbq import BBQ
from selfcorrect.benchmarks.winogender import Winogender
from selfcorrect.errors import unknown_choice

BENCHMARKS: dict[str, type] = {"bbq": BBQ, "winogender": Winogender}


# Variants are benchmarks of their own name, so results of both can live in one store.
VARIANTS: dict[str, tuple[str, dict]] = {"winogender-all": ("winogender", {"variant": "all"})}


def get_benchmark(name: str) -> Benchmark:
    if name in VARIANTS:
        base, kwargs = VARIANTS[name]
        bench = BENCHMARKS[base](**kwargs)
        bench.name = name
        return bench
    if name not in BENCHMARKS:
        raise unknown_choice("benchmark", name, [*BENCHMARKS, *VARIANTS])
    return BENCHMARKS[name]()


__all__ = ["BENCHMARKS", "Benchmark", "Item", "get_benchmark"]
