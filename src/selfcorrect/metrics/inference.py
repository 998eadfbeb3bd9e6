"""Tests behind the verdicts: paired differences and model-by-condition interactions on
template clusters, with bootstrap CIs, permutation p-values, multiplicity adjustment (Holm, or
Benjamini-Hochberg), the minimum detectable effect, and the items a given effect needs.

Clusters are BBQ templates (category x question_index); a metric is a function of summed counts
(see metrics/stats.py). p-values come from a paired permutation test over templates: under the
null the two conditions (or, for an interaction, the two models) are exchangeable within a
template, so each template's counts are swapped with probability 1/2; the p-value is the share
of permutations whose |difference| is at least the observed one (with the observed counted, so
it is never 0)."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from selfcorrect.metrics.stats import MetricFn, cluster_weights, percentile_ci

Z_POWER = 2.8  # z(1 - 0.05/2) + z(0.8): the MDE is about 2.8 standard errors


def z_power(n_tests: int = 1, alpha: float = 0.05, power: float = 0.8) -> float:
    """z(1 - alpha / (2 n_tests)) + z(power): two-sided, Bonferroni over n_tests (Holm's
    first step, the strictest)."""
    from scipy import stats

    return float(stats.norm.ppf(1 - alpha / (2 * n_tests)) + stats.norm.ppf(power))


@functools.lru_cache(maxsize=64)
def _flips(n_clusters: int, n_perm: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 7919])
    f = rng.integers(0, 2, size=(n_perm, n_clusters)).astype(float)
    f.flags.writeable = False
    return f


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float
    hi: float
    se: float  # bootstrap standard error
    p: float  # two-sided permutation p-value
    n_clusters: int
    n_items: int
    ci_method: str = "cluster bootstrap"

    @property
    def mde(self) -> float:
        """Minimum detectable effect at alpha 0.05 (two-sided, one test) and 80% power."""
        return Z_POWER * self.se

    def mde_for(self, n_tests: int, alpha: float = 0.05) -> float:
        """The same, with alpha shared by n_tests tests."""
        return z_power(n_tests, alpha) * self.se


def _summaries(values: np.ndarray) -> tuple[tuple[float, float], float]:
    finite = values[np.isfinite(values)]
    se = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    return percentile_ci(values), se


def _p_value(observed: float, permuted: np.ndarray) -> float:
    finite = permuted[np.isfinite(permuted)]
    if not np.isfinite(observed) or finite.size == 0:
        return math.nan
    extreme = (np.abs(finite) >= abs(observed) - 1e-12).sum()
    return float((extreme + 1) / (finite.size + 1))


def contrast(blocks: list[np.ndarray], coefs: list[float], swaps: list[tuple[int, int]],
             metric: MetricFn, n_items: int, n_boot: int = 1000, n_perm: int = 2000,
             seed: int = 0) -> Estimate:  # fmt: skip
    """sum of coefs[i] x metric(blocks[i]): blocks are count arrays on the same templates
    (aligned rows). The bootstrap draws templates once for every block; the permutation test's
    null makes each pair of blocks in `swaps` exchangeable within a template (swapped with
    probability 1/2, the same coin for every pair of one template)."""

    def value(bs):
        return sum(c * metric(b) for c, b in zip(coefs, bs, strict=True))

    point = float(value([b.sum(axis=0) for b in blocks]))
    c = blocks[0].shape[0]
    if c < 2:
        return Estimate(point, math.nan, math.nan, math.nan, math.nan, c, n_items)
    w = cluster_weights(c, n_boot, seed)
    (lo, hi), se = _summaries(value([w @ b for b in blocks]))
    p = permutation_p(blocks, coefs, swaps, metric, n_perm, seed)
    return Estimate(point, lo, hi, se, p, c, n_items)


def permutation_p(blocks: list[np.ndarray], coefs: list[float], swaps: list[tuple[int, int]],
                  metric: MetricFn, n_perm: int = 2000, seed: int = 0) -> float:  # fmt: skip
    """The two-sided permutation p-value of `contrast` alone (see there)."""
    c = blocks[0].shape[0]
    if c < 2 or n_perm <= 0:
        return math.nan

    def value(bs):
        return sum(k * metric(b) for k, b in zip(coefs, bs, strict=True))

    f = _flips(c, n_perm, seed)
    permuted = [(1 - f) @ b for b in blocks]
    for i, j in swaps:
        permuted[i] = permuted[i] + f @ blocks[j]
        permuted[j] = permuted[j] + f @ blocks[i]
    return _p_value(float(value([b.sum(axis=0) for b in blocks])), value(permuted))


def paired_difference(a: np.ndarray, b: np.ndarray, metric: MetricFn, n_items: int,
                      n_boot: int = 1000, n_perm: int = 2000,
                      seed: int = 0) -> Estimate:  # fmt: skip
    """metric(b) - metric(a): the same items under two conditions, counts summed per template
    (rows of a and b are the same templates)."""
    return contrast([a, b], [-1, 1], [(0, 1)], metric, n_items, n_boot, n_perm, seed)


def interaction(a_ref, a_x, b_ref, b_x, metric: MetricFn, n_items: int, n_boot: int = 1000,
                n_perm: int = 2000, seed: int = 0) -> Estimate:  # fmt: skip
    """(effect of x in model A) - (effect of x in model B), effect = metric(x) - metric(ref),
    on the templates both models answered (rows aligned); the permutation swaps the two
    models' counts within a template."""
    return contrast([a_ref, a_x, b_ref, b_x], [-1, 1, 1, -1], [(0, 2), (1, 3)], metric,
                    n_items, n_boot, n_perm, seed)  # fmt: skip


def interaction_difference(a_x, a_y, b_x, b_y, metric: MetricFn, n_items: int,
                           n_boot: int = 1000, n_perm: int = 2000,
                           seed: int = 0) -> Estimate:  # fmt: skip
    """(A - B gap under x) - (A - B gap under y), each gap an interaction against the same
    reference (which cancels): (a_x - a_y) - (b_x - b_y). The permutation swaps conditions x
    and y within a template in both models (the null: the gap is the same under both)."""
    return contrast([a_x, a_y, b_x, b_y], [1, -1, -1, 1], [(0, 1), (2, 3)], metric, n_items,
                    n_boot, n_perm, seed)  # fmt: skip


def holm(p: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error); NaN stays NaN."""
    idx = [i for i, v in enumerate(p) if v == v]
    order = sorted(idx, key=lambda i: p[i])
    m, out, running = len(idx), [math.nan] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def benjamini_hochberg(p: list[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate); NaN stays NaN."""
    idx = [i for i, v in enumerate(p) if v == v]
    order = sorted(idx, key=lambda i: p[i], reverse=True)
    m, out, running = len(idx), [math.nan] * len(p), 1.0
    for k, i in enumerate(order):
        rank = m - k
        running = min(running, p[i] * m / rank)
        out[i] = min(1.0, running)
    return out


ADJUST = {"holm": holm, "bh": benjamini_hochberg}


def with_holm(table):
    """A table with a `p` column gets `p_holm`: Holm over all its rows."""
    if table.empty or "p" not in table:
        return table
    return table.assign(p_holm=holm(table["p"].astype(float).tolist()))


def items_needed(se: float, n_items: int, effect: float, n_tests: int = 1,
                 alpha: float = 0.05, power: float = 0.8) -> int:  # fmt: skip
    """Items per condition to detect `effect` (two-sided, Bonferroni-corrected alpha over
    `n_tests`, as Holm's first step) given a pilot's standard error at `n_items`: the SE scales
    as 1/sqrt(n) for a design that keeps its templates-per-item ratio (the pilot's SE already
    carries the clustering). BBQ's templates are a fixed set (343; 25 to 50 per category):
    once a design uses every template, more items add only within-template draws and the SE
    falls more slowly than 1/sqrt(n), so the number is a lower bound there."""
    if not (se > 0 and n_items > 0 and effect > 0):
        return 0
    z = z_power(n_tests, alpha, power)
    return int(math.ceil(n_items * (z * se / effect) ** 2))
