"""The real SmolLM2 through the transformers backend: readout against a plain reference."""

import pytest
import torch

from selfcorrect.backends.base import Conversation
from selfcorrect.backends.transformers.backend import TransformersBackend
from selfcorrect.backends.transformers.prompt_kv import PromptKV

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


def test_score_matches_reference_and_batches(smollm2, smollm2_fp32):
    convs = [
        Conversation(
            (("user", "Who is older? (a) The boy (b) Unknown (c) The man."),), "The answer is"
        ),
        Conversation((("user", "Pick one. (a) red (b) blue (c) green."),), "The answer is"),
    ]
    prompts = [smollm2.render(c) for c in convs]
    truth = [[reference_logprob(smollm2_fp32, p, c) for c in CANDS] for p in prompts]
    # fp32: the cached, batched readout equals the plain one. bf16 differs from the fp32 truth
    # by up to 0.28 nats on this 135M model, and its plain forward no less (measured 0.23), so
    # bf16 is held to the truth with a bf16-sized tolerance, not to another bf16 path.
    for backend, tol in ((smollm2_fp32, 1e-3), (smollm2, 0.5)):
        got = backend.score(prompts, [CANDS, CANDS])
        for res, ref in zip(got, truth, strict=True):
            assert res.logprobs == pytest.approx(ref, abs=tol)
            assert max(range(3), key=res.logprobs.__getitem__) == max(range(3), key=ref.__getitem__)
            assert res.n_tokens == (3, 3, 3)  # " (a)" is 'Ġ(', 'a', ')': a whole continuation
        single = backend.score(prompts[:1], [CANDS])[0]
        assert single.logprobs == pytest.approx(truth[0], abs=tol)


def test_boundary_merge_is_scored_whole(smollm2):
    # A prompt ending in a space: ' (' would otherwise merge with it; the start moves back.
    prompt = smollm2.render(Conversation((("user", "Say a letter."),), "The answer is "))
    res = smollm2.score([prompt], [("(a)", "(b)")])[0]
    assert all(n >= 3 for n in res.n_tokens)
    assert all(lp < 0 for lp in res.logprobs)


def test_generate_is_greedy_and_deterministic(smollm2, smollm2_fp32):
    """Greedy text does not depend on the batch or the cache in fp32; in bf16 the same batch
    from the same cache state gives the same text (across batch shapes and cached prefixes
    bf16 rounds differently, and a near-tie can flip: seen on Intel Xeons with AMX-BF16)."""
    prompt = smollm2.render(Conversation((("user", "Count: 1, 2, 3,"),), ""))
    a = smollm2_fp32.generate([prompt, prompt + " 4"], 6)
    b = smollm2_fp32.generate([prompt], 6)
    assert a[0] == b[0] and len(a) == 2 and a[0].strip()
    # bf16 rounds by shape, and a prefix reused from the prompt KV cache changes the shapes:
    # the same call from the same cache state gives the same text (a flip across cache states
    # is a bf16 near-tie, docs/performance.md).
    outs = []
    for _ in range(2):
        smollm2._kv.clear()
        outs.append(smollm2.generate([prompt, prompt + " 4"], 6))
    assert outs[0] == outs[1] and all(o.strip() for o in outs[0])


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


@pytest.fixture(scope="module")
def smollm2_fp32():
    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.registry import resolve

    return TransformersBackend(resolve("smollm2-135m-instruct"), dtype="float32")


def _bbq_prompts(backend, n):
    from selfcorrect.benchmarks.bbq import BBQ
    from selfcorrect.conditions import load_library, protocol

    lib = load_library()
    items = BBQ().sample(BBQ().items(), n, 5)
    convs = []
    for it in items:
        steps = protocol(lib.get("instruct"), "bbq", it.fields, 0, lib)
        convs.append(Conversation((("user", steps[0].text),), steps[1].text))
    return [backend.render(c) for c in convs], [it.candidates for it in items]


def test_shared_prefix_path_equals_per_option_reference(smollm2_fp32, smollm2):
    """One forward per prompt (options from its KV cache) against one pass per option."""
    prompts, cands = _bbq_prompts(smollm2_fp32, 16)
    fast = smollm2_fp32.score(prompts, cands)
    plain = smollm2_fp32.score_per_option(prompts, cands)
    for f, p in zip(fast, plain, strict=True):
        assert f.logprobs == pytest.approx(p.logprobs, abs=1e-3)  # fp32: the same numbers
        assert f.n_tokens == p.n_tokens
    # bf16: batch shapes round differently; answers agree, log-probs within bf16 noise
    fast = smollm2.score(prompts, cands)
    plain = smollm2.score_per_option(prompts, cands)
    same = [
        max(range(3), key=f.logprobs.__getitem__) == max(range(3), key=p.logprobs.__getitem__)
        for f, p in zip(fast, plain, strict=True)
    ]
    assert sum(same) >= 15
    assert (
        max(
            abs(a - b)
            for f, p in zip(fast, plain, strict=True)
            for a, b in zip(f.logprobs, p.logprobs, strict=True)
        )
        < 0.5
    )


def test_cross_round_kv_reuse_equals_recomputing(smollm2_fp32):
    """A round-1 prompt extends the round-0 one: only its new tokens are computed, from the
    stored KV of round 0, and the scores equal a backend that recomputes everything."""
    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.registry import resolve

    fresh = TransformersBackend(
        resolve("smollm2-135m-instruct"), dtype="float32", kv_budget_tokens=0
    )
    prompts, cands = _bbq_prompts(smollm2_fp32, 6)
    smollm2_fp32.score(prompts, cands)  # round 0 stored
    hits = smollm2_fp32._kv.hits
    longer = [
        p + " (b)<|im_end|>\n<|im_start|>user\nReview.<|im_end|>\n<|im_start|>assistant\n"
        "Upon evaluation, the answer is"
        for p in prompts
    ]
    reused = smollm2_fp32.score(longer, cands)
    assert smollm2_fp32._kv.hits == hits + 6
    again = fresh.score(longer, cands)
    for a, b in zip(reused, again, strict=True):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-3)


TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}


def _tiny_model(tok, kind: str = "llama", attn: str = "sdpa", window: int = 40):
    """A small random fp32 model: Llama, or Gemma-3 with a sliding-window layer (`window`
    tokens) before a full one."""
    import torch
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    if kind == "llama":
        config = LlamaConfig(
            vocab_size=len(tok), num_attention_heads=4, num_key_value_heads=4, **TINY
        )
        model = LlamaForCausalLM(config)
    else:
        config = Gemma3TextConfig(
            vocab_size=len(tok),
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            sliding_window=window,
            layer_types=["sliding_attention", "full_attention"],
            **TINY,
        )
        model = Gemma3ForCausalLM(config)
    model.config._attn_implementation = attn
    return model.to(torch.float32).eval()


def test_from_model_and_out_of_memory_split(smollm2, monkeypatch):
    """A model built in memory scores like a loaded one; a batch that runs out of memory is
    split and the batch size lowered, with the same results."""
    import torch

    backend = TransformersBackend.from_model(
        _tiny_model(smollm2.tok), smollm2.tok, "tiny", kind="chat"
    )
    assert backend.batch_tokens >= 256 and backend.info["device"] == "cpu"
    prompts = [backend.render(Conversation([("user", f"Question {i}? Answer:")])) for i in range(6)]
    cands = [[" (a)", " (b)", " (c)"]] * 6
    expected = backend.score_per_option(prompts, cands)
    real, calls = backend._score_cached_batch, []

    def flaky(batch):
        calls.append(len(batch))
        if len(batch) > 2:
            raise torch.OutOfMemoryError("simulated")
        return real(batch)

    monkeypatch.setattr(backend, "_score_cached_batch", flaky)
    before = backend.batch_tokens
    got = backend.score(prompts, cands)
    assert backend.batch_tokens < before and max(calls) > 2
    for e, g in zip(expected, got, strict=True):
        assert g.logprobs == pytest.approx(e.logprobs, abs=1e-4)


def test_head_in_pieces_gives_each_read_its_own_rows_log_probability(smollm2_fp32, monkeypatch):
    """Pieces of 4 rows (many pieces, every read landing in one) score as the head in one
    piece: a read taken from the wrong piece or row would move its option's sum (by far more
    than the 1e-4 allowed: fp32 matmuls over another row blocking differ by about 2e-5)."""
    from selfcorrect.backends.transformers import backend as module

    prompts, cands = _bbq_prompts(smollm2_fp32, 6)
    smollm2_fp32._kv.clear()
    whole = smollm2_fp32.score(prompts, cands)
    monkeypatch.setattr(module, "HEAD_ROWS", 4)
    smollm2_fp32._kv.clear()
    pieces = smollm2_fp32.score(prompts, cands)
    for w, p in zip(whole, pieces, strict=True):
        assert p.logprobs == pytest.approx(w.logprobs, abs=1e-4)


def test_prompt_kv_finds_longest_shared_prefix_through_its_block_index():
    import torch

    kv = PromptKV(torch, budget_tokens=1000)
    layer = torch.arange(100.0).reshape(1, 100, 1)
    cache = type("C", (), {"layers": [type("L", (), {"keys": layer[None], "values": layer[None]})]})
    a = list(range(100))
    b = list(range(40)) + [999] * 60
    kv.store([a], cache, torch.ones((1, 100), dtype=torch.long))
    kv.store([b], cache, torch.ones((1, 100), dtype=torch.long))
    got = kv.lookup(list(range(70)) + [5, 6])
    assert got[0].shape[2] == 70  # shares 70 tokens with a, 40 with b
    assert kv.lookup([7] * 50) is None  # nothing shared
    assert kv.lookup(list(range(10)) + [1] * 30) is None  # shorter than one block


@pytest.mark.parametrize(
    ("kind", "attn"),
    [("llama", "sdpa"), ("llama", "eager"), ("gemma", "sdpa"), ("gemma", "eager")],
)
def test_tree_mask_scores_options_of_any_count_and_length(smollm2, kind, attn):
    """Options of different lengths and counts in one tree-masked batch, prompts sharing a
    long run (computed once, first): the same log-probabilities as one pass per option. With
    sliding-window layers (a 40-token window), rows longer than the window too: those layers
    get the tree mask cut to the window."""
    model = _tiny_model(smollm2.tok, kind, attn)
    backend = TransformersBackend.from_model(model, smollm2.tok, f"tiny-{kind}", kind="chat")
    story = "Two neighbours, an old man and a young woman, met at the bus stop on Monday. "
    questions = ["Who was late?", "Who was early?", "Who waited?", "Which one?"]
    prompts = [
        backend.render(Conversation((("user", story * (1 + (i == 3)) + q),), "Answer:"))
        for i, q in enumerate(questions)
    ] + [backend.render(Conversation((("user", "Hi"),), "Answer:"))]
    cands = [
        (" the man", " the woman", " cannot be determined from this"),
        (" yes", " no"),
        (" (a)", " (b)", " (c)", " (d) none"),
        (" x", " y"),
        (" (a)", " (b)"),
    ]
    want = backend.score_per_option(prompts, cands)
    plain, real = [], backend.score_per_option
    backend.score_per_option = lambda p, c: plain.append(len(p)) or real(p, c)
    got = backend.score(prompts, cands)
    for g, w in zip(got, want, strict=True):
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)
        assert g.n_tokens == w.n_tokens
    # the story prompts (55+ tokens) exceed the window, "Hi" (33 + 2) fits it: all in one pass
    assert plain == []
    # a later call reuses what the first one stored (Gemma too: its windowed layers' keys
    # are kept whole, the mask cuts them, at their positions)
    assert backend._kv.used > 0
    again = backend.score(prompts, cands)
    for g, w in zip(again, want, strict=True):
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-4)


def test_shared_runs_are_computed_once_by_level(smollm2_fp32):
    """BBQ's four items of one context: the ambiguous context is shared by all four, the
    disambiguated one by two; both runs are computed once, before the items, which then
    compute only their own tokens; the scores equal one pass per option."""
    from selfcorrect.benchmarks.bbq import BBQ
    from selfcorrect.conditions import load_library, protocol

    lib = load_library()
    items = BBQ().items(["Age"])[:4]
    assert len({it.fields["question_text"][:80] for it in items}) == 1  # one context
    prompts = []
    for it in items:
        steps = protocol(lib.get("baseline"), "bbq", it.fields, 0, lib)
        prompts.append(smollm2_fp32.render(Conversation((("user", steps[0].text),), steps[1].text)))
    cands = [it.candidates for it in items]
    smollm2_fp32._kv.clear()
    prefixes = [smollm2_fp32._encode(p) for p in prompts]
    levels = smollm2_fp32._shared_runs(prefixes)
    assert [len(level) for level in levels] == [1, 1]
    ambiguous, disambiguated = levels[0][0], levels[1][0]
    assert len(disambiguated) > len(ambiguous) + 16
    assert sum(p[: len(ambiguous)] == ambiguous for p in prefixes) == 4
    assert sum(p[: len(disambiguated)] == disambiguated for p in prefixes) == 2
    before = smollm2_fp32.forward_tokens
    got = smollm2_fp32.score(prompts, cands)
    computed = smollm2_fp32.forward_tokens - before
    options = 4 * 3 * 2  # " (a)" is 3 tokens; the last is read, not fed
    own = sum(len(p) for p in prefixes) - 3 * len(ambiguous) - (len(disambiguated) - len(ambiguous))
    assert computed <= own + options + 8  # + the boundary tokens the options re-tokenize
    want = smollm2_fp32.score_per_option(prompts, cands)
    for g, w in zip(got, want, strict=True):
        assert g.logprobs == pytest.approx(w.logprobs, abs=1e-3)


def test_shared_runs_nest_by_level_and_skip_short_extensions():
    """Runs shared by neighbours in sorted order, each on the level below the runs that
    contain it; a run adding fewer than a block over its parent or the cache is not computed."""
    backend = TransformersBackend.__new__(TransformersBackend)
    backend._kv = PromptKV(torch, budget_tokens=1000)
    a, b = [1] * 20 + [2] * 20 + [3] * 5, [1] * 20 + [2] * 20 + [4] * 5
    c, d = [1] * 20 + [5] * 20, [1] * 20 + [5] * 20 + [6]
    e, f = [9] * 30 + [1], [9] * 30 + [2]
    g = a + [7]  # shares 45 tokens with a: only 5 more than the run a and b share
    levels = backend._shared_runs([g, a, b, c, d, e, f])
    assert levels == [[[1] * 20, [9] * 30], [[1] * 20 + [2] * 20, [1] * 20 + [5] * 20]]
    # what the cache already holds is not computed again
    layer = torch.zeros(1, 1, 40, 1)
    cache = type("C", (), {"layers": [type("L", (), {"keys": layer, "values": layer})]})
    backend._kv.store([[9] * 30 + [0] * 10], cache, torch.ones((1, 40), dtype=torch.bool))
    assert backend._shared_runs([e, f]) == []


def test_length_batches_cut_where_padding_costs_more_than_a_forward():
    from selfcorrect.backends.transformers.batching import length_batches

    def sizes(rows, budget, overhead=64):
        return [[len(r) for r in b] for b in length_batches(rows, budget, len, overhead)]

    short, long = [[0] * 10] * 8, [[0] * 100] * 2
    # one batch would pad 8 short rows to 100 (1,000 tokens); two cost 80 + 200 + 2 x 64
    assert sizes(long + short, 4096) == [[10] * 8, [100] * 2]
    # with a dearer forward, one batch is cheaper
    assert sizes(long + short, 4096, overhead=1000) == [[10] * 8 + [100] * 2]
    # the budget holds, and a row longer than it still gets a batch of its own
    assert all(len(b) * max(b) <= 1000 for b in sizes([[0] * 50] * 100, 1000))
    assert sizes([[0] * 3000, [0] * 5], 1000) == [[5], [3000]]


def test_prompts_longer_than_the_context_are_refused(smollm2):
    from selfcorrect.backends.base import PromptTooLong

    model = _tiny_model(smollm2.tok)
    model.config.max_position_embeddings = 64
    backend = TransformersBackend.from_model(model, smollm2.tok, "tiny", kind="chat")
    short = backend.render(Conversation([("user", "Hi?")], "A:"))
    long = backend.render(Conversation([("user", "word " * 80)], "A:"))
    with pytest.raises(PromptTooLong) as err:
        backend.score([short, long], [[" (a)", " (b)"]] * 2)
    assert err.value.index == 1 and err.value.n_tokens > 64 and err.value.limit == 64
    with pytest.raises(PromptTooLong):  # the prompt fits, the prompt and its new tokens do not
        backend.generate([short], max_tokens=60)
    assert backend.score([short], [[" (a)", " (b)"]])  # what fits is scored


def _cot_prompts(backend, n=6, lengths=False):
    from selfcorrect.benchmarks.bbq import BBQ

    b = BBQ()
    items = b.sample(b.items(["Age", "SES"]), n, 0)
    out = [backend.render(Conversation((("user", it.fields["question_text"]),),
                                       "Let's think step by step.")) for it in items]  # fmt: skip
    if lengths:  # rows of very different lengths, one that stops at once
        out += [backend.render(Conversation((("user", "Say yes."),), "Yes.")),  # stops at once
                backend.render(Conversation((("user", "Hi. " * 150),), ""))]  # fmt: skip
    return out


def test_decode_loop_equals_generate_greedy_in_fp32(smollm2_fp32):
    """Token for token the same text as model.generate, for rows of very different lengths
    and early stops in one batch, with fewer slots than rows (rows join as others leave)."""
    prompts = _cot_prompts(smollm2_fp32, lengths=True)
    want = smollm2_fp32.generate_hf(prompts, 24)
    smollm2_fp32._kv.clear()
    from unittest import mock

    finished = []
    with mock.patch.object(type(smollm2_fp32), "decode_slots", lambda self, longest: 3):
        got = smollm2_fp32.generate(prompts, 24, on_done=lambda i, t: finished.append((i, t)))
    assert got == want
    assert "" in want  # a row stopped at once (end of turn) while others ran on
    # every row reported once, as it finished, with its final text
    assert sorted(finished) == sorted(enumerate(got)) and finished != list(enumerate(got))


def test_sliding_window_rows_of_any_length_are_decoded_by_the_loop(smollm2):
    """Gemma-3's sliding-window layers: the decode loop cuts their window (its decoder takes
    a mask per layer type), so rows that fit the window and rows beyond it are all decoded
    by the loop, token for token model.generate's text (which applies the window itself),
    none sent to model.generate. Every row is reported once."""
    from unittest import mock

    model = _tiny_model(smollm2.tok, "gemma", window=64)
    backend = TransformersBackend.from_model(model, smollm2.tok, "tiny-gemma", kind="chat")
    short = [backend.render(Conversation((("user", q),), "Answer:"))
             for q in ("Hi", "Who was late?", "Say yes.")]  # fmt: skip
    long = [backend.render(Conversation((("user", "Two neighbours met at the stop. " * k),), ""))
            for k in (2, 6)]  # fmt: skip
    prompts = [short[0], long[1], short[1], long[0], short[2]]
    n = [len(backend._encode(p)) for p in prompts]
    # rows inside the window, one that crosses it while decoding, one beyond it from the start
    assert max(n[0], n[2], n[4]) + 24 <= 64 and n[3] < 64 < n[3] + 24 and n[1] > 64
    want = backend.generate_hf(prompts, 24)
    backend._kv.clear()
    via_hf, real = [], backend.generate_hf
    finished = []
    with mock.patch.object(backend, "generate_hf",
                           lambda p, *a: via_hf.append(len(p)) or real(p, *a)):  # fmt: skip
        got = backend.generate(prompts, 24, on_done=lambda i, t: finished.append((i, t)))
    assert got == want and via_hf == []
    assert backend.decode_steps > 0 and sorted(finished) == sorted(enumerate(got))


def test_sliding_window_answer_turn_reuses_the_decode_loops_kv(smollm2):
    """Gemma-3: the KV the decode loop keeps for a reasoning is reused by the answer turn
    that extends it past the window, with the same log-probabilities as computed afresh."""
    model = _tiny_model(smollm2.tok, "gemma", window=64)
    backend = TransformersBackend.from_model(model, smollm2.tok, "tiny-gemma", kind="chat")
    first = backend.render(Conversation((("user", "Who was late, the man or the woman?"),), ""))
    (said,) = backend.generate([first], 16)
    again = "Think again. " * 8 + "Who was late?"
    turn = Conversation((("user", "Who was late, the man or the woman?"), ("assistant", said),
                         ("user", again)), "The answer is")  # fmt: skip
    prompt, cands = backend.render(turn), [[" the man", " the woman", " unknown"]]
    assert len(backend._encode(prompt)) > 64 and backend._kv.peek(backend._encode(prompt)) >= 16
    reused = backend.score([prompt], cands)
    backend._kv.clear()
    fresh = backend.score([prompt], cands)
    plain = backend.score_per_option([prompt], cands)
    assert reused[0].logprobs == pytest.approx(fresh[0].logprobs, abs=1e-4)
    assert reused[0].logprobs == pytest.approx(plain[0].logprobs, abs=1e-4)


def test_sampling_depends_only_on_the_row_seed(smollm2_fp32):
    smollm2 = smollm2_fp32  # bf16 kernels round differently per batch shape: see performance.md
    from unittest import mock

    from selfcorrect.backends.base import Sampling

    prompts = _cot_prompts(smollm2, 8)
    s, keys = Sampling(1.0, 0), [11 * k + 5 for k in range(8)]
    runs = []
    for slots in (1, 16, 3):
        smollm2._kv.clear()
        with mock.patch.object(type(smollm2), "decode_slots", lambda self, longest, n=slots: n):
            runs.append(smollm2.generate(prompts, 16, s, keys))
    assert runs[0] == runs[1] == runs[2]
    alone = smollm2.generate(prompts[5:6], 16, s, keys[5:6])  # resumed: the row on its own
    assert alone == runs[0][5:6]
    assert len(set(smollm2.generate(prompts[:1] * 4, 16, s, [1, 2, 3, 4]))) > 1  # seeds differ


def test_decode_memory_is_bounded_by_its_slots(smollm2):
    """Many rows through few slots: the cache stays at its slots x width, the prompt KV cache
    within its budget."""
    from unittest import mock

    from selfcorrect.backends.transformers import decode

    widths = []
    real = decode.SlotCache.__init__

    def spy(self, *a, **k):
        real(self, *a, **k)
        widths.append(tuple(self.keys.shape))

    prompts = _cot_prompts(smollm2, 24)
    with mock.patch.object(decode.SlotCache, "__init__", spy), \
            mock.patch.object(type(smollm2), "decode_slots", lambda self, longest: 4):  # fmt: skip
        smollm2.generate(prompts, 12)
    assert len(widths) == 1 and widths[0][1] == 4
    assert smollm2._kv.used <= smollm2._kv.budget


@pytest.mark.parametrize("kind,prefix_cache", [("llama", True), ("llama", False),
                                               ("gemma", True), ("gemma", False)])  # fmt: skip
def test_captured_hidden_state_is_the_models_at_the_answer_position(smollm2, kind, prefix_cache):
    """Every scoring path keeps the model's own states: the shared prefix, one sequence per
    option, and a sliding-window model with one row inside its window and one beyond it."""
    import numpy as np

    model = _tiny_model(smollm2.tok, kind, window=60)
    backend = TransformersBackend.from_model(model, smollm2.tok, "tiny", kind="chat")
    backend.prefix_cache = prefix_cache
    backend.capture_layers = [0, 2]
    questions = ("Who ran?", "Who won? " + "They met at the station. " * 8)
    prompts = [backend.render(Conversation((("user", f"{q} (a) x (b) y (c) z"),),
                                           "The answer is")) for q in questions]  # fmt: skip
    lengths = [len(backend._encode(p)) for p in prompts]
    assert lengths[0] < 60 < lengths[1]  # under a 60-token window: one fits, one does not
    results = backend.score(prompts, [[" (a)", " (b)", " (c)"]] * 2)
    for prompt, res in zip(prompts, results, strict=True):
        ids = backend._encode(prompt)
        with torch.inference_mode():
            out = model(torch.tensor([ids]), output_hidden_states=True)
        assert res.hidden.shape == (2, model.config.hidden_size)
        for j, k in enumerate((0, 2)):  # the last prompt token: it predicts the answer
            np.testing.assert_allclose(res.hidden[j], out.hidden_states[k][0, -1].numpy(),
                                       atol=1e-4)  # fmt: skip
