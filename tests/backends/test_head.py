"""The output head in fp32 on a bf16 model (--head-dtype float32): unrounded logits from the same
weights and hidden states, for scoring, the decode loop and model.generate alike."""

import pytest
import torch

from selfcorrect.backends.base import Conversation
from selfcorrect.backends.transformers.backend import TransformersBackend
from selfcorrect.backends.transformers.head import Fp32Head, use_fp32_head
from tests.backends.test_transformers import _tiny_model

pytestmark = pytest.mark.slow

GRID = 128  # bf16 values of magnitude >= 1 are multiples of 2**-7


def _off_grid(gaps) -> list[float]:
    return [abs(g * GRID - round(g * GRID)) for g in gaps]


def test_one_token_readout_leaves_the_bf16_grid_only_with_the_fp32_head(smollm2):
    """A yes/no readout on a bf16 model: with its own head, the two options' log-probability
    gap is a difference of two bf16 logits (a multiple of 2**-7); with the fp32 head it is not,
    and it stays within a bf16 rounding of the other (same body, same batch)."""
    from selfcorrect.registry import resolve

    fp32_head = TransformersBackend(resolve("smollm2-135m-instruct"), head_dtype="float32")
    assert isinstance(fp32_head.head, Fp32Head) and not isinstance(smollm2.head, Fp32Head)
    assert fp32_head.info["head_dtype"] == "float32" and smollm2.info["head_dtype"] == "bfloat16"
    prompts = [
        smollm2.render(
            Conversation(
                (("user", f"A student has a GPA of {g}. Admit? yes or no."),), "My answer is"
            )
        )  # fmt: skip
        for g in ("2.1", "2.6", "3.0", "3.3", "3.5", "3.7", "3.9", "4.0")
    ]
    cands = [(" yes", " no")] * len(prompts)
    rounded, exact = smollm2.score(prompts, cands), fp32_head.score(prompts, cands)
    assert all(r.n_tokens == (1, 1) for r in rounded + exact)  # one token each: one logit each
    gap_r = [r.logprobs[0] - r.logprobs[1] for r in rounded]
    gap_e = [r.logprobs[0] - r.logprobs[1] for r in exact]
    assert max(_off_grid(gap_r)) < 1e-3
    assert sum(d > 1e-3 for d in _off_grid(gap_e)) >= len(prompts) - 1
    assert max(abs(a - b) for a, b in zip(gap_r, gap_e, strict=True)) < 0.26


def test_fp32_head_serves_generate_and_the_softcap_too(smollm2):
    """A bf16 Gemma 3 (soft-capped logits): last_logits is the fp32 product, capped; the
    model's own forward (model.generate's path) gives fp32 logits from it; an fp32 model
    keeps its head."""
    model = _tiny_model(smollm2.tok, "gemma", window=64)
    assert use_fp32_head(model) is False  # fp32 already: nothing to copy
    model = model.to(torch.bfloat16)
    weight = model.get_output_embeddings().weight.detach().float()
    backend = TransformersBackend.from_model(model, smollm2.tok, "tiny-gemma", kind="chat",
                                             head_dtype="float32")  # fmt: skip
    assert isinstance(model.get_output_embeddings(), Fp32Head)
    hidden = torch.randn(3, weight.shape[1], dtype=torch.bfloat16)
    cap = model.config.final_logit_softcapping
    want = hidden.float() @ weight.T
    want = torch.tanh(want / cap) * cap if cap else want
    assert torch.equal(backend.last_logits(hidden), want)
    ids = torch.tensor([backend._encode("Hi there")])
    with torch.inference_mode():
        assert model(ids).logits.dtype == torch.float32
    prompt = backend.render(Conversation((("user", "Hi"),), "Answer:"))
    texts = backend.generate_hf([prompt], 4)
    assert len(texts) == 1 and isinstance(texts[0], str)
