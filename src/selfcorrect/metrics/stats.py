"""Cluster bootstrap on per-cluster sufficient statistics.

A metric is a function of summed counts. We sum the counts per cluster (a BBQ template), draw
clusters with replacement as multinomial weights, and evaluate the metric on every replicate at
once: B x C weights times C x K counts."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from scipy import stats

MetricFn = Callable[[np.ndarray], np.ndarray]  # (..., K) summed counts -> (...) values


@functools.lru_cache(maxsize=256)
def cluster_weights(n_clusters: int, n_boot: int, seed: int) -> np.ndarray:
    """Multinomial cluster counts per replicate. A pure function of its arguments, so it is
    drawn once per (clusters, replicates, seed) and shared: a study report evaluates thousands
    of bootstraps over a few cluster counts. Read-only, since callers share it."""
    rng = np.random.default_rng(seed)
    if n_clusters == 0:
        w = np.zeros((n_boot, 0))
    else:
        w = rng.multinomial(n_clusters, np.full(n_clusters, 1.0 / n_clusters), size=n_boot)
    w.flags.writeable = False
    return w


def percentile_ci(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (float("nan"), float("nan"))
    lo, hi = np.percentile(finite, [50 * (1 - level), 50 * (1 + level)])
    return (float(lo), float(hi))


def _nan_count(values: np.ndarray) -> int:
    return int((~np.isfinite(values)).sum())


def bootstrap(counts: np.ndarray, metric: MetricFn, n_boot: int, seed: int):
    """Point estimate, percentile CI of metric(sum of counts) resampling clusters (rows), and
    how many replicates gave no value (NaN: e.g. no non-UNKNOWN answer drawn); those are left
    out of the CI and counted, never hidden."""
    point = float(metric(counts.sum(axis=0)))
    if n_boot <= 0 or counts.shape[0] < 2:
        return point, (float("nan"), float("nan")), 0
    w = cluster_weights(counts.shape[0], n_boot, seed)
    values = metric(w @ counts)
    return point, percentile_ci(values), _nan_count(values)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, metric: MetricFn, n_boot: int, seed: int):
    """metric(b) - metric(a) on the same clusters, with the same draws for both."""
    point = float(metric(b.sum(axis=0)) - metric(a.sum(axis=0)))
    if n_boot <= 0 or a.shape[0] < 2:
        return point, (float("nan"), float("nan")), 0
    w = cluster_weights(a.shape[0], n_boot, seed)
    values = metric(w @ b) - metric(w @ a)
    return point, percentile_ci(values), _nan_count(values)


def wilson(k: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (finite width at 0 and 1)."""
    if n <= 0:
        return (float("nan"), float("nan"))
    z = float(stats.norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def none_seen_upper(n: int, level: float = 0.95) -> float:
    """Exact (Clopper-Pearson) upper bound on a rate of which 0 of n were seen: how large a
    share of items could still differ when all n agree."""
    return float(1 - (0.5 - level / 2) ** (1 / n)) if n > 0 else float("nan")


def degenerate(ci: tuple[float, float]) -> bool:
    """A CI of zero width from finite data (every replicate equal): it says nothing."""
    lo, hi = ci
    return lo == lo and hi == hi and hi - lo < 1e-9  # equal up to rounding of float sums


def clusters_of(df) -> np.ndarray:
    """Cluster codes: BBQ templates, law-school students, Winogender occupations, else rows."""
    import pandas as pd

    for cols in (("category", "question_index"), ("student",), ("occupation",)):
        if all(c in df for c in cols):
            return pd.factorize(pd.Series(list(zip(*(df[c] for c in cols), strict=True))))[0]
    return np.arange(len(df))


def cluster_sum(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    out = np.zeros((codes.max() + 1 if len(codes) else 0, values.shape[1]))
    np.add.at(out, codes, values)
    return out


def ratio(c: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return c[..., 1] / c[..., 0]
