"""Benchmarks: the shipped data read into frozen `Item`s, each benchmark a class satisfying
`Benchmark` (base.py). They are registered, with their metrics and report sections, in
selfcorrect.catalog."""

from selfcorrect.benchmarks.base import Benchmark, Item

__all__ = ["Benchmark", "Item"]
