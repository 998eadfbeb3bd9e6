"""The real SmolLM2 through the transformers backend: readout against a plain reference."""

import pytest
import torch

from selfcorrect.backends.base import Conversation

pytestmark = pytest.mark.slow

CANDS = (" (a)", " (b)", " (c)")


def reference_logprob(backend, prompt: str, cont: str) -> float:
    """One full forward per option with logits everywhere: the plain way."""
    ctx = backend._encode(prompt)
    full = backend._encode(prompt + cont)
    start = 0
    while start < len(ctx) and ctx[start] == full[start]:
        start += 1
    ids = torch.tensor([full])
    with torch.inference_mode():
        logits = backend.model(ids).logits.float()
    lp = torch.log_softmax(logits[0, :-1], -1)
    return sum(lp[t - 1, full[t]].item() for t in range(start, len(full)))


def test_score_matches_reference_and_batches(smollm2):
    convs = [
        Conversation(
            (("user", "Who is older? (a) The boy (b) Unknown (c) The man."),), "The answer is"
        ),
        Conversation((("user", "Pick one. (a) red (b) blue (c) green."),), "The answer is"),
    ]
    prompts = [smollm2.render(c) for c in convs]
    got = smollm2.score(prompts, [CANDS, CANDS])
    for prompt, res in zip(prompts, got, strict=True):
        ref = [reference_logprob(smollm2, prompt, c) for c in CANDS]
        assert res.logprobs == pytest.approx(ref, abs=0.15)  # bf16 batch vs single padding
        assert max(range(3), key=res.logprobs.__getitem__) == max(range(3), key=ref.__getitem__)
        assert res.n_tokens == (3, 3, 3)  # " (a)" is 'Ġ(', 'a', ')': a whole continuation
    single = smollm2.score(prompts[:1], [CANDS])[0]
    assert single.logprobs == pytest.approx(got[0].logprobs, abs=0.1)


def test_boundary_merge_is_scored_whole(smollm2):
    # A prompt ending in a space: ' (' would otherwise merge with it; the start moves back.
    prompt = smollm2.render(Conversation((("user", "Say a letter."),), "The answer is "))
    res = smollm2.score([prompt], [("(a)", "(b)")])[0]
    assert all(n >= 3 for n in res.n_tokens)
    assert all(lp < 0 for lp in res.logprobs)


def test_generate_is_greedy_and_deterministic(smollm2):
    prompt = smollm2.render(Conversation((("user", "Count: 1, 2, 3,"),), ""))
    a = smollm2.generate([prompt, prompt + " 4"], 6)
    b = smollm2.generate([prompt], 6)
    assert a[0] == b[0] and len(a) == 2 and a[0].strip()


class _Tok:
    """A tokenizer stand-in whose template renders the generation prompt differently from a
    finished assistant turn (as templates with hidden reasoning blocks do)."""

    def apply_chat_template(self, msgs, tokenize=False, add_generation_prompt=False):
        text = "".join(
            f"<{m['role']}>{m['content']}</{m['role']}>" for m in msgs if m["role"] == "user"
        )
        if add_generation_prompt:
            return text + "<assistant>"
        return text + "".join(
            f"<assistant><think></think>{m['content']}</assistant>"
            for m in msgs
            if m["role"] == "assistant"
        )


def test_prefill_continuation_check(smollm2):
    from selfcorrect.backends.base import continues_prefill

    assert continues_prefill(smollm2.tok) is None
    assert "does not start with the generation prompt" in continues_prefill(_Tok())
