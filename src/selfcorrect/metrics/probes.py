"""Reading hidden states (methodology.md section 7; after arXiv 2505.11924): a difference-in-
means concept direction, the cosine of round-to-round shifts with it, and linear probes. All
fitted on one half of the templates and measured on the other, so no number reuses the data it
was fitted on. Descriptive, not causal: a probe that predicts the answer shows the information
is linearly readable there, not that the model uses it; nothing here intervenes."""

from __future__ import annotations

import hashlib

import numpy as np
from scipy import optimize


def halves(groups) -> np.ndarray:
    """True for rows whose group (template) falls in the fitting half: a stable hash, so the
    split never depends on order or on which items were drawn."""
    return np.array([int(hashlib.sha256(str(g).encode()).hexdigest(), 16) % 2 == 0
                     for g in groups])  # fmt: skip


def diff_in_means(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unit vector mean(x | y) - mean(x | not y); zeros when a class is missing."""
    if y.all() or not y.any():
        return np.zeros(x.shape[1])
    d = x[y].mean(axis=0) - x[~y].mean(axis=0)
    norm = np.linalg.norm(d)
    return d / norm if norm > 0 else d


def cosines(shifts: np.ndarray, direction: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(shifts, axis=1) * np.linalg.norm(direction)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, shifts @ direction / norms, np.nan)


def fit_probe(x: np.ndarray, y: np.ndarray, l2: float = 1.0) -> tuple:
    """L2-regularised logistic regression on standardised features (L-BFGS); returns
    (mean, scale, weights, bias) for `predict`."""
    mu, sd = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mu) / sd
    t = y.astype(float)

    def loss(wb):
        w, b = wb[:-1], wb[-1]
        s = z @ w + b
        log1p = np.logaddexp(0, s)
        value = (log1p - t * s).mean() + l2 * (w @ w) / (2 * len(t))
        p = 1 / (1 + np.exp(-s))
        g = np.append(z.T @ (p - t) / len(t) + l2 * w / len(t), (p - t).mean())
        return value, g

    res = optimize.minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B",
                            options={"maxiter": 500})  # fmt: skip
    return mu, sd, res.x[:-1], res.x[-1]


def predict(probe: tuple, x: np.ndarray) -> np.ndarray:
    mu, sd, w, b = probe
    return ((x - mu) / sd) @ w + b > 0
