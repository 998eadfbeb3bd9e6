"""Exact transitions: pooled confidence and critique by hand (arXiv 2412.19513)."""

import numpy as np
import pandas as pd
import pytest

from selfcorrect.metrics.exact import _aggregate, _per_variant


def test_pooled_confidence_and_critique_by_hand():
    # item 1: p0 = (.8, .2), gold 0; q_0 = (.9, .1), q_1 = (.5, .5)
    # item 2: p0 = (.2, .8), gold 0; q_0 = (.6, .4), q_1 = (.25, .75)
    q1 = np.array([[0.9, 0.1], [0.5, 0.5]])
    q2 = np.array([[0.6, 0.4], [0.25, 0.75]])
    rows = [{"model": "m", "condition": "c", "item": i, **_per_variant(p0, q, 0)}
            for i, (p0, q) in enumerate([(np.array([0.8, 0.2]), q1),
                                         (np.array([0.2, 0.8]), q2)])]  # fmt: skip
    got = _aggregate(pd.DataFrame(rows), n_boot=0, seed=0).iloc[0]
    # CL = (.8 x .9 + .2 x .6) / (.8 + .2) = .84, not the item mean of q_g[g] (.75)
    assert got.confidence == pytest.approx(0.84)
    assert got.keep_gold == pytest.approx(0.75)
    # CS = (.2 x .5 + .8 x .25) / (.2 + .8) = .30
    assert got.critique == pytest.approx(0.30)
    assert got.accuracy_before == pytest.approx(0.5)
    assert got.accuracy_after == pytest.approx((0.72 + 0.1 + 0.12 + 0.2) / 2)
    assert got.accuracy_after == pytest.approx(
        got.accuracy_before * got.confidence + (1 - got.accuracy_before) * got.critique
    )
    assert got.accuracy_change == pytest.approx((0.72 + 0.1 + 0.12 + 0.2) / 2 - 0.5)  # -0.07
    assert got.p_change == pytest.approx((0.8 * 0.1 + 0.2 * 0.5 + 0.2 * 0.4 + 0.8 * 0.25) / 2)
