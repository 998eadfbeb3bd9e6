"""The output head in fp32 on a bf16 model (--head-dtype float32): unrounded logits from the same
weights and hidden states, for scoring, the decode loop and model.generate alike."""

import pytest
import torch

from selfcorrect.backends.base import Conversation
from selfcorrect.backends.transformers.backend import TransformersBackend
from selfcorrect.backends.transformers.head import Fp32Head, use_fp32_head
from tests.backends.test_transformers import _tiny_model

pytestmark = pytest.mark.slow


def _read_logits(backend, seen: list):
    """Record every logits tensor the backend's head hands to scoring."""
    head = backend.last_logits
    backend.last_logits = lambda hidden: seen.append(head(hidden)) or seen[-1]


def test_scoring_reads_unrounded_logits_only_with_the_fp32_head(smollm2):
    """A yes/no readout on bf16 SmolLM2, the same prompts and batch through two loads: with
    its own head every logit scoring reads is a bf16 value; with the fp32 head almost none is,
    each within one bf16 rounding of the other's, and the scores are their log-softmax."""
    from selfcorrect.registry import resolve

    fp32_head = TransformersBackend(resolve("smollm2-135m-instruct"), head_dtype="float32")
    assert isinstance(fp32_head.head, Fp32Head) and not isinstance(smollm2.head, Fp32Head)
    assert fp32_head.info["head_dtype"] == "float32" and smollm2.info["head_dtype"] == "bfloat16"
    assert fp32_head.info["fp32_matmul_precision"] == "highest"
    prompts = [
        smollm2.render(
            Conversation(
                (("user", f"A student has a GPA of {g}. Admit? yes or no."),), "My answer is"
            )
        )
        for g in ("2.1", "2.6", "3.0", "3.3", "3.5", "3.7", "3.9", "4.0")
    ]
    cands = [(" yes", " no")] * len(prompts)
    logits = {}
    for name, backend in (("bf16", smollm2), ("fp32", fp32_head)):
        backend._kv.clear()
        seen = []
        _read_logits(backend, seen)
        try:
            scores = backend.score(prompts, cands)
        finally:
            del backend.last_logits
        assert all(r.n_tokens == (1, 1) for r in scores)
        logits[name] = torch.cat(seen)
    rounded, exact = logits["bf16"], logits["fp32"]
    assert torch.equal(rounded, rounded.bfloat16().float())
    assert (exact != exact.bfloat16().float()).float().mean() > 0.9
    # in bf16 spacings at each logit's magnitude (2**-7 relative), the magnitude floored at 1:
    # rounding, half a spacing, for all but a few (a Xeon's bf16 GEMM rounds some partial sums:
    # at most 3 seen). Unfloored, logits near 0 (1e-6 to 1e-4, cancellation) lie up to 18
    # spacings apart on an AVX-512-bf16 EPYC, though within 1e-5 absolute; the readout reads
    # logits of 16-32, where every one was within half a spacing there.
    spacing = torch.exp2(torch.floor(torch.log2(exact.abs().clamp_min(1.0))) - 7)
    apart = (rounded - exact).abs() / spacing
    assert (apart <= 0.5 + 1e-3).float().mean() > 0.99 and apart.max() <= 4
    # each score is the log-softmax of the fp32 logits at its prompt's read
    lsm = torch.log_softmax(exact, dim=-1)
    for p, r in zip(prompts, scores, strict=True):
        yes, no = (smollm2._encode(p + c)[-1] for c in cands[0])
        err = (lsm[:, yes] - r.logprobs[0]).abs() + (lsm[:, no] - r.logprobs[1]).abs()
        assert err.min().item() < 1e-4


def test_fp32_head_serves_generate_and_the_softcap_too(smollm2):
    """A bf16 Gemma 3 (soft-capped logits): last_logits is the fp32 product, capped; the
    model's own forward (model.generate's path) gives fp32 logits from it; an fp32 model
    keeps its head."""
    model = _tiny_model(smollm2.tok, "gemma", window=64)
    assert use_fp32_head(model) is False  # fp32 already: nothing to copy
    model.config.final_logit_softcapping = 30.0  # Gemma 3's configs may set it; tiny's does not
    model = model.to(torch.bfloat16)
    weight = model.get_output_embeddings().weight.detach().float()
    backend = TransformersBackend.from_model(model, smollm2.tok, "tiny-gemma", kind="chat",
                                             head_dtype="float32")  # fmt: skip
    assert isinstance(model.get_output_embeddings(), Fp32Head)
    hidden = torch.randn(3, weight.shape[1], dtype=torch.bfloat16)
    want = torch.tanh(hidden.float() @ weight.T / 30.0) * 30.0
    assert backend.softcap == 30.0 and torch.equal(backend.last_logits(hidden), want)
    ids = torch.tensor([backend._encode("Hi there")])
    with torch.inference_mode():
        assert model(ids).logits.dtype == torch.float32
    prompt = backend.render(Conversation((("user", "Hi"),), "Answer:"))
    texts = backend.generate_hf([prompt], 4)
    assert len(texts) == 1 and isinstance(texts[0], str)
