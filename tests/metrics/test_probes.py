"""Direction, cosine and probe on synthetic states with a planted direction."""

import numpy as np
import pytest

from selfcorrect.metrics.probes import cosines, diff_in_means, fit_probe, halves, predict


def planted(n=400, dim=32, seed=0):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=dim)
    v /= np.linalg.norm(v)
    y = rng.random(n) < 0.4
    x = rng.normal(size=(n, dim)) + np.outer(y * 3.0, v)
    return x, y, v


def test_direction_recovers_the_planted_one():
    x, y, v = planted()
    d = diff_in_means(x, y)
    assert float(d @ v) > 0.95 and np.linalg.norm(d) == pytest.approx(1.0)
    assert not diff_in_means(x, np.ones(len(y), bool)).any()  # one class: no direction


def test_probe_on_held_out_half_and_chance_without_signal():
    x, y, _ = planted()
    fit = halves(range(len(y)))
    probe = fit_probe(x[fit], y[fit])
    acc = (predict(probe, x[~fit]) == y[~fit]).mean()
    assert acc > 0.85  # the Bayes rate for a separation of 3 SD is about 0.93
    rng = np.random.default_rng(1)
    noise = rng.normal(size=x.shape)
    acc0 = (predict(fit_probe(noise[fit], y[fit]), noise[~fit]) == y[~fit]).mean()
    assert acc0 < 0.75  # nothing planted: about the majority rate (0.6)


def test_shift_cosines_and_the_split():
    x, y, v = planted()
    shifts = np.outer(np.ones(10), v) + np.random.default_rng(2).normal(scale=0.1, size=(10, 32))
    assert cosines(shifts, v).mean() > 0.8  # noise of norm 0.57 beside the unit shift
    assert cosines(-shifts, v).mean() < -0.8
    a, b = halves(["Age:1", "Age:2", "Age:1"]), halves(["Age:1", "Age:2", "Age:1"])
    assert list(a) == list(b) and a[0] == a[2]  # stable: a template always on one side
