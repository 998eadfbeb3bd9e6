"""The decode loop's token choice on its own (no model): sampled draws follow the tempered,
nucleus-truncated softmax, and each row's draw depends only on its own generator."""

import torch

from selfcorrect.backends.base import Sampling
from selfcorrect.backends.transformers.decode import Decoder, _Row


def _draws(logits, sampling, n, seed=0):
    chooser = Decoder.__new__(Decoder)
    chooser.torch = torch
    rows = [_Row(i, [], torch.Generator().manual_seed(seed + i)) for i in range(n)]
    return chooser._choose(logits.expand(n, -1), rows, sampling)


def test_sampled_tokens_follow_the_tempered_softmax():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, -30.0]])
    n = 20000
    got = torch.bincount(torch.tensor(_draws(logits, Sampling(0.5, 0), n)), minlength=5) / n
    want = torch.softmax(logits[0] / 0.5, -1)
    assert torch.allclose(got, want, atol=0.01), (got, want)  # 4 sigma at n = 20000 is < 0.01


def test_nucleus_keeps_only_the_top_mass_and_never_a_zero_mass_token():
    logits = torch.tensor([[3.0, 2.0, 0.0, -1.0, -float("inf")]])
    # softmax: 0.66, 0.24, 0.03, 0.01, 0 -> top_p 0.8 keeps the first two
    counts = torch.bincount(torch.tensor(_draws(logits, Sampling(1.0, 0, top_p=0.8), 5000)),
                            minlength=5)  # fmt: skip
    assert counts[2:].sum() == 0 and counts[0] > counts[1] > 0


def test_a_rows_draw_depends_only_on_its_own_generator():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(1))
    chooser = Decoder.__new__(Decoder)
    chooser.torch = torch

    def rows(seeds):
        return [_Row(i, [], torch.Generator().manual_seed(s)) for i, s in enumerate(seeds)]

    for sampling in (Sampling(1.0, 0), Sampling(0.7, 0, top_p=0.9)):
        together = chooser._choose(logits, rows(range(6)), sampling)
        alone = [chooser._choose(logits[k : k + 1], rows([k]), sampling)[0] for k in range(6)]
        assert together == alone


def test_nucleus_cut_is_the_same_for_a_row_alone_and_in_a_batch():
    """The nucleus is cut from a per-row cumulative sum: a batched reduction, split over
    threads differently for one row than for many, could move the cut and the draw."""
    logits = torch.randn(48, 151936, generator=torch.Generator().manual_seed(2)) * 2
    chooser = Decoder.__new__(Decoder)
    chooser.torch = torch
    s = Sampling(1.0, 0, top_p=0.95)

    def rows(seeds):
        return [_Row(i, [], torch.Generator().manual_seed(s)) for i, s in enumerate(seeds)]

    together = chooser._choose(logits, rows(range(48)), s)
    alone = [chooser._choose(logits[k : k + 1], rows([k]), s)[0] for k in range(48)]
    assert together == alone


def test_logits_that_are_not_numbers_are_an_error():
    import pytest

    from selfcorrect.errors import SelfCorrectError

    with pytest.raises(SelfCorrectError, match="not finite"):
        _draws(torch.full((1, 5), float("nan")), Sampling(1.0, 0), 2)


def test_decode_step_cuts_the_sliding_window_by_position():
    """Each row's new token sits at column t, its tokens from column `start` (position 0):
    the sliding layers' mask keeps the keys whose position lies within `window` of the
    query's, as backend._attention_masks does for a prompt (key pos > query pos - window);
    the full layers' mask, and a model with one mask, keep every column from `start`."""
    from types import SimpleNamespace

    window, t = 3, 6
    backend = SimpleNamespace(_mask_per_type=True, _window=window,
                              _mask4d=lambda a: a[:, None].clone())  # fmt: skip
    decoder = Decoder.__new__(Decoder)
    decoder.torch, decoder.b = torch, backend
    starts = torch.tensor([0, 2, 5])
    allowed = torch.arange(t + 1)[None, :] >= starts[:, None]
    masks = decoder._masks(allowed, t)
    for b, start in enumerate(starts.tolist()):
        q = t - start  # the query's position
        want = [c >= start and (c - start) > q - window for c in range(t + 1)]
        assert masks["sliding_attention"][b, 0, 0].tolist() == want
        assert masks["full_attention"][b, 0, 0].tolist() == [c >= start for c in range(t + 1)]
    backend._mask_per_type = False
    assert torch.equal(decoder._masks(allowed, t), allowed[:, None, None])
