"""Hugging Face transformers backend: bf16 on CPU by default, GPU when present. Scoring
computes each distinct prompt token once (the prompt KV cache, shared runs, options under a
tree mask in the prompt's own forward); generation goes through `model.generate`."""

from __future__ import annotations

import inspect
import itertools
import logging
from collections.abc import Callable, Sequence

from selfcorrect.backends.base import (
    ChatRendering,
    LoadOptions,
    Sampling,
    ScoreResult,
    candidate_tokens,
    check_length,
    common_prefix,
    continues_prefill,
)
from selfcorrect.backends.transformers.batching import (
    HEAD_ROWS,
    PROMPT_KV_TOKENS,
    Request,
    auto_batch_tokens,
    head_pieces,
    length_batches,
    option_width,
)
from selfcorrect.backends.transformers.gguf_cache import dequantised_copy, quiet_transformers
from selfcorrect.backends.transformers.prompt_kv import PromptKV
from selfcorrect.errors import SelfCorrectError
from selfcorrect.registry import ResolvedModel


def _torch_dtype(name: str):
    import torch

    if name not in ("bfloat16", "float32", "float16"):
        raise SelfCorrectError(f"unknown dtype '{name}' (valid: bfloat16, float16, float32)")
    return getattr(torch, name)


def _pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


SAMPLER = "inverse-cdf-float64/2026-12-05"  # see decode.Decoder._choose
CPU_SLOTS = 192  # decode rows per step on a CPU: tokens/s still rising there (performance.md)


class TransformersBackend(ChatRendering):
    name = "transformers"
    model_prefix = None
    batches = True
    preferred_batch = None
    streams = True
    slot_cap: int | None = None  # rows a decode step may hold; None: the device's default

    @classmethod
    def from_options(cls, resolved: ResolvedModel, options: LoadOptions) -> TransformersBackend:
        return cls(resolved, dtype=options.dtype, device=options.device,
                   trust_remote_code=options.trust_remote_code,
                   head_dtype=options.head_dtype)  # fmt: skip

    def __init__(
        self,
        resolved: ResolvedModel,
        dtype: str = "bfloat16",
        device: str | None = None,
        batch_tokens: int | None = None,
        trust_remote_code: bool = False,
        prefix_cache: bool = True,
        kv_budget_tokens: int = PROMPT_KV_TOKENS,
        head_dtype: str = "model",
    ):
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer

        quiet_transformers()
        torch_dtype = _torch_dtype(dtype)
        folder = resolved.path if resolved.source == "hf-dir" else dequantised_copy(resolved, dtype)
        try:
            tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
            model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=torch_dtype, trust_remote_code=trust_remote_code
            ).to(_pick_device(device))
        except (OSError, ValueError, SafetensorError) as exc:  # a truncated or corrupt file
            raise SelfCorrectError(f"cannot load model from {folder}: {exc}") from None
        self._setup(
            model,
            tok,
            resolved.name,
            resolved.kind,
            dtype,
            batch_tokens,
            prefix_cache,
            kv_budget_tokens,
            head_dtype,
        )

    @classmethod
    def from_model(
        cls,
        model,
        tok,
        name: str,
        kind: str | None = None,
        batch_tokens: int | None = None,
        prefix_cache: bool = True,
        kv_budget_tokens: int = PROMPT_KV_TOKENS,
        head_dtype: str = "model",
    ) -> TransformersBackend:
        """Wrap a model already in memory (e.g. randomly initialised from a config on a GPU,
        for throughput measurements); it stays on its device and dtype (head_dtype "float32"
        swaps its output embeddings for an fp32 copy)."""
        quiet_transformers()
        self = cls.__new__(cls)
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        self._setup(model, tok, name, kind, dtype, batch_tokens, prefix_cache, kv_budget_tokens,
                    head_dtype)  # fmt: skip
        return self

    def _setup(self, model, tok, name, kind, dtype, batch_tokens, prefix_cache, kv_budget,
               head_dtype="model"):  # fmt: skip
        import torch

        self.torch = torch
        self.model, self.tok = model, tok
        self.device = str(next(model.parameters()).device)
        self.dtype = _torch_dtype(dtype)
        self.prefix_cache = prefix_cache
        self.kv_budget = kv_budget  # 0: off
        self.model.eval()
        has_template = bool(getattr(self.tok, "chat_template", None))
        kind = kind or ("chat" if has_template else "base")
        if kind == "chat" and not has_template:
            raise SelfCorrectError(f"model '{name}' is listed as chat but has no chat template")
        self.chat = kind == "chat"
        self.model_name = name
        self.prefill_problem = continues_prefill(self.tok) if self.chat else None
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.decoder = self.model.get_decoder()
        # newer transformers renamed the decoder's cache argument
        params = inspect.signature(self.decoder.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        text = getattr(self.model.config, "text_config", None) or self.model.config
        full = set(getattr(text, "layer_types", None) or ["full_attention"]) == {"full_attention"}
        # sliding-window layers would see the whole row under one tree mask: unless the
        # decoder takes a mask per layer type (below), used only for rows that fit the window
        self._window = None if full else getattr(text, "sliding_window", None) or 0
        # Gemma 3's decoder takes one mask per layer type, so its sliding-window layers get the
        # tree mask cut to their window, and rows longer than the window keep the one-pass path;
        # given a plain cache its sliding layers keep every key (the masks cut, not the cache),
        # so its prompts' KV can be reused like a full-attention model's
        self._mask_per_type = bool(self._window) and text.model_type == "gemma3_text"
        self._kv = PromptKV(torch, self.kv_budget if full or self._mask_per_type else 0)
        self._attn = self.model.config._attn_implementation
        if self._attn not in ("sdpa", "eager"):  # they take a ready 4D mask; others may not
            self.prefix_cache = False
        # the longest sequence the model was trained for: longer prompts are refused, not scored
        self.max_len = getattr(text, "max_position_embeddings", None)
        if head_dtype == "float32":
            from selfcorrect.backends.transformers.head import use_fp32_head

            use_fp32_head(self.model)
        self.head = self.model.get_output_embeddings()
        self.softcap = getattr(self.model.config, "final_logit_softcapping", None)
        self.batch_tokens = batch_tokens or auto_batch_tokens(
            self.model.config, self.device, self._kv.budget
        )
        self.forward_tokens = 0  # real (unpadded) tokens through the model, for throughput
        self.capture_layers: list[int] = []  # hidden-state indices to keep at answer positions
        self._captured: dict[int, object] = {}
        self.n_hidden_states = text.num_hidden_layers + 1  # the embeddings, then each layer
        self.hidden_size = text.hidden_size
        self.info = {
            "engine": "transformers",
            "transformers_version": __import__("transformers").__version__,
            "torch_version": torch.__version__,
            "dtype": dtype,
            "head_dtype": str(self.head.weight.dtype).removeprefix("torch."),
            # "highest" unless the user lowered it: then fp32 matmuls (an fp32 head's) may use
            # TF32 or bf16 passes on GPUs that have them
            "fp32_matmul_precision": torch.get_float32_matmul_precision(),
            "device": self.device,
            "prompt_format": "chat-template" if self.chat else "human-assistant",
            "threads": torch.get_num_threads(),
            "batch_tokens": self.batch_tokens,
            # how a sampled token is drawn from its row's seed (the same seed gives other text
            # under another sampler: decode.Decoder._choose)
            "sampler": SAMPLER,
        }

    # scoring -----------------------------------------------------------------------------
    def score(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[ScoreResult]:
        """Whole-continuation log-probabilities, tokenization-safe: each option is tokenized
        together with its prompt, and scored from the first token where any option's
        tokenization departs from the prompt's, so merges at the boundary are counted."""
        if self.prefix_cache:
            return self._score_shared_prefix(prompts, candidates)
        return self.score_per_option(prompts, candidates)

    def score_per_option(self, prompts, candidates) -> list[ScoreResult]:
        """The plain way, one full sequence per option (the reference the fast path is
        tested against, and the fallback for models whose cache cannot be shared)."""
        seqs: list[tuple[int, int, list[int], int]] = []  # (request, option, ids, start)
        encode = self._batch_encoder(prompts, candidates)
        for r, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
            fulls, start = candidate_tokens(encode, prompt, cands)
            check_length(r, max(len(f) for f in fulls), self.max_len)
            seqs.extend((r, j, ids, start) for j, ids in enumerate(fulls))
        out = [[0.0] * len(c) for c in candidates]
        ntok = [[0] * len(c) for c in candidates]
        kept: dict[int, object] = {}  # request -> states before its first scored token
        for batch in length_batches(seqs, self.batch_tokens, lambda s: len(s[2])):
            lps, states = self._score_batch(batch)
            for b, ((r, j, ids, start), lp) in enumerate(zip(batch, lps, strict=True)):
                out[r][j] = lp
                ntok[r][j] = len(ids) - start
                if states is not None and r not in kept:  # the options share the prompt
                    kept[r] = states[:, b].float().cpu().numpy()
        return [ScoreResult(tuple(o), tuple(n), kept.get(r))
                for r, (o, n) in enumerate(zip(out, ntok, strict=True))]  # fmt: skip

    def _score_shared_prefix(self, prompts, candidates) -> list[ScoreResult]:
        """One forward per prompt, its options scored in the same pass (a tree mask): each
        prompt computes only the tokens after the longest run already in the prompt KV cache,
        and runs that two or more prompts of the call share are computed once, first."""
        reqs = []
        encode = self._batch_encoder(prompts, candidates)
        for r, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
            fulls, start = candidate_tokens(encode, prompt, cands)
            check_length(r, max(len(f) for f in fulls), self.max_len)
            # tokens every option starts with (' (' of ' (a)', ' (b)') join the prompt: fed
            # once, their log-probabilities added to each option
            lead = min(len(ids) - start for ids in fulls) - 1
            lead = min(lead, *(common_prefix(fulls[0][start:], ids[start:]) for ids in fulls))
            reqs.append(
                Request(r, fulls[0][: start + lead], [ids[start + lead :] for ids in fulls], lead)
            )
        out: list[ScoreResult | None] = [None] * len(prompts)
        if self._window is not None and not self._mask_per_type:  # one mask: it holds only within
            longer = [q for q in reqs if len(q.prefix) + option_width(q.options) > self._window]
            if longer:
                plain = self.score_per_option(
                    [prompts[q.r] for q in longer], [candidates[q.r] for q in longer]
                )
                for q, res in zip(longer, plain, strict=True):
                    out[q.r] = res
                reqs = [q for q in reqs if out[q.r] is None]
        for level in self._shared_runs([q.prefix for q in reqs]):
            for _ in self._forward_batches([Request(None, run, [], 0) for run in level]):
                pass  # computed for their KV, kept in the prompt KV cache
        for q, lps in self._forward_batches(reqs):
            out[q.r] = ScoreResult(tuple(lps), tuple(q.lead + len(s) for s in q.options),
                                   self._captured.pop(q.r, None))  # fmt: skip
        return out

    def _shared_runs(self, prefixes) -> list[list[list[int]]]:
        """Leading runs that two or more of `prefixes` share and that add at least a block to
        what the prompt KV cache holds, grouped by depth (a run inside another comes a level
        later), so that each level's forward reuses the one before it. In BBQ the four items
        of a context share the ambiguous context, two of them also the disambiguating part."""
        if not self._kv.budget:
            return []
        ordered = sorted({tuple(p) for p in prefixes})
        shared = {a[:n] for a, b in itertools.pairwise(ordered) if (n := common_prefix(a, b))}
        levels: list[list[list[int]]] = []
        # In sorted order a run comes right before the runs it starts, so the runs taken that
        # contain the current one are a stack (linear, not a search over all runs)
        stack: list[tuple] = []
        for run in sorted(shared):
            while stack and run[: len(stack[-1])] != stack[-1]:
                stack.pop()
            parent = len(stack[-1]) if stack else 0
            if len(run) - max(parent, self._kv.peek(run)) < PromptKV.BLOCK:
                continue
            if len(stack) == len(levels):
                levels.append([])
            levels[len(stack)].append(list(run))
            stack.append(run)
        return levels

    def _forward_batches(self, reqs):
        """Requests in batches of similar cost (new prompt tokens after the cached run, plus
        option tokens) within the token budget; yields each with its options' summed
        log-probabilities."""

        def cost(q):
            return len(q.prefix) - self._kv.peek(q.reusable) + option_width(q.options)

        for batch in length_batches(reqs, self.batch_tokens, cost):
            yield from zip(batch, self._score_fitting(batch), strict=True)

    def _score_fitting(self, batch) -> list[list[float]]:
        """A batch that runs out of accelerator memory is split in half, and the batch size
        halved for the rest of the run, instead of failing the run."""
        torch = self.torch
        try:
            return self._score_cached_batch(batch)
        except getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError):
            if len(batch) == 1:
                raise
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        self.batch_tokens = max(256, self.batch_tokens // 2)
        logging.getLogger(__name__).warning(
            "out of memory: batch size lowered to %d tokens", self.batch_tokens
        )
        half = len(batch) // 2
        return self._score_fitting(batch[:half]) + self._score_fitting(batch[half:])

    def _score_cached_batch(self, batch: list[Request]) -> list[list[float]]:
        """One forward for a batch of requests. Row b holds [pad | KV reused from an earlier
        prompt | pad | its new prompt tokens | every option's tokens but the last, side by
        side | pad]. Each option token sees the whole prompt and its own option's earlier
        tokens, at the positions it would have right after the prompt: a tree mask, so the
        options need neither a second pass nor copies of the prompt's KV. The prompt's KV (not
        the options') goes into the prompt KV cache."""
        torch = self.torch
        reused = [self._kv.lookup(q.reusable) for q in batch]
        c_len = [0 if kv is None else kv[0].shape[2] for kv in reused]
        n_new = [len(q.prefix) - c for q, c in zip(batch, c_len, strict=True)]
        wc, wn = max(c_len), max(n_new)
        wq = wn + max(option_width(q.options) for q in batch)
        ids = torch.full((len(batch), wq), self.tok.pad_token_id, dtype=torch.long)
        pos = torch.zeros((len(batch), wq), dtype=torch.long)
        prompt_cols = torch.zeros((len(batch), wc + wq), dtype=torch.bool)
        allowed = torch.zeros((len(batch), wq, wc + wq), dtype=torch.bool)
        causal = torch.ones((wq, wq), dtype=torch.bool).tril()
        reads: dict[tuple[int, int], int] = {}  # (row, column) read -> its hidden-state row
        at, targets, owner = [], [], []  # per token read: hidden row, token, summed into
        starts = [0]  # row b's options are flat[starts[b] : starts[b + 1]]

        def read(b, col, token, slots):
            for slot in slots:
                at.append(reads.setdefault((b, col), len(reads)))
                targets.append(token)
                owner.append(slot)

        for b, (q, c, n) in enumerate(zip(batch, c_len, n_new, strict=True)):
            ids[b, wn - n : wn] = torch.tensor(q.prefix[c:])
            pos[b, wn - n : wn] = torch.arange(c, len(q.prefix))
            prompt_cols[b, wc - c : wc] = True
            prompt_cols[b, wc + wn - n : wc + wn] = True
            # every query sees the cached run and itself (padding rows too: no empty row);
            # prompt queries see only prompt tokens up to their own
            allowed[b, :, :wc] = prompt_cols[b, :wc]
            allowed[b, :, wc:] = causal
            allowed[b, wn - n : wn] &= prompt_cols[b]
            slots = range(starts[-1], starts[-1] + len(q.options))
            for t in range(q.lead):  # the shared leading tokens count for every option
                read(b, wn - 1 - q.lead + t, q.prefix[len(q.prefix) - q.lead + t], slots)
            col = wn
            for slot, opt in zip(slots, q.options, strict=True):
                k = len(opt) - 1
                ids[b, col : col + k] = torch.tensor(opt[:-1])
                pos[b, col : col + k] = torch.arange(len(q.prefix), len(q.prefix) + k)
                allowed[b, col : col + k] = prompt_cols[b]
                allowed[b, col : col + k, wc + col : wc + col + k] = causal[:k, :k]
                # the prompt's last position predicts each option's first token
                for t, token in enumerate(opt):
                    read(b, wn - 1 if t == 0 else col + t - 1, token, [slot])
                col += k
            starts.append(slots.stop)
        self.forward_tokens += sum(n_new) + sum(option_width(q.options) for q in batch)
        with torch.inference_mode():
            past = self._kv.assemble(reused, c_len, wc) if wc else self._empty_cache()
            capture = bool(self.capture_layers) and bool(targets)
            out = self.decoder(
                input_ids=ids.to(self.device),
                attention_mask=self._attention_masks(allowed, pos, c_len, wc),
                position_ids=pos.to(self.device),
                use_cache=True,
                output_hidden_states=capture,
                **({self._cache_kw: past} if past is not None else {}),
            )
            self._kv.store([q.prefix for q in batch], out.past_key_values, prompt_cols, reused)
            if not targets:  # a shared run computed for its KV only
                return [[] for _ in batch]
            if capture:  # the residual stream where the answer is read (before the lead tokens)
                states = torch.stack([out.hidden_states[k] for k in self.capture_layers])
                for b, q in enumerate(batch):
                    col = wn - 1 - q.lead
                    self._captured[q.r] = states[:, b, col].float().cpu().numpy()
            rows, cols = zip(*reads, strict=True)
            hidden = out.last_hidden_state[torch.tensor(rows), torch.tensor(cols)]
            flat = self._summed_logprobs(hidden, at, targets, owner, starts[-1])
        return [flat[a:z] for a, z in itertools.pairwise(starts)]

    def _empty_cache(self):
        """None (the decoder makes its own), or for a model with a mask per layer type a
        plain cache: the decoder's own would keep only a window of its sliding layers' keys,
        and the prompt KV cache stores whole rows."""
        if not self._mask_per_type:
            return None
        from transformers import DynamicCache

        return DynamicCache()

    def _attention_masks(self, allowed, pos, c_len, wc):
        """The tree mask; for a model with a mask per layer type, also its sliding-window
        layers' copy, which drops keys `window` or more positions before the query (the
        decoder's own rule, by position: the tree puts tokens off their position order)."""
        if not self._mask_per_type:
            return self._mask4d(allowed)
        torch = self.torch
        key_pos = torch.zeros(allowed.shape[0], allowed.shape[2], dtype=torch.long)
        for b, c in enumerate(c_len):  # a reused run sits right-aligned before column wc
            key_pos[b, wc - c : wc] = torch.arange(c)
        key_pos[:, wc:] = pos
        near = key_pos[:, None, :] > pos[:, :, None] - self._window  # [B, query, key]
        return {"full_attention": self._mask4d(allowed),
                "sliding_attention": self._mask4d(allowed & near)}  # fmt: skip

    def _mask4d(self, allowed):
        """[B, 1, Q, KV] mask handed to the attention as is: boolean for SDPA, additive for
        the eager implementation."""
        torch = self.torch
        allowed = allowed[:, None].to(self.device)
        if self._attn == "sdpa":
            return allowed
        zero = torch.zeros((), dtype=self.model.dtype, device=self.device)
        return torch.where(allowed, zero, torch.finfo(self.model.dtype).min)

    def _summed_logprobs(self, hidden, at, targets, owner, n_rows) -> list[float]:
        """Logits only at the positions read (`hidden`, one row each), log-softmax in fp32;
        token i is targets[i] read at hidden row at[i], summed into owner[i] in fp64. The head
        runs over the rows in pieces of HEAD_ROWS to 2 * HEAD_ROWS - 1 (one piece below that):
        a whole batch at once holds up to rows x vocabulary x 10 bytes (Gemma 3's 262k tokens at
        4,096 rows: 8.2 GB measured, 1.5 GB in pieces); pieces that large take the GEMM kernel
        the whole batch took, bit for bit the same on every packaged model (perf/head_pieces.py)."""
        torch = self.torch
        at = torch.tensor(at, dtype=torch.long)
        targets = torch.tensor(targets, dtype=torch.long)
        tok_lp = torch.empty(len(at), dtype=torch.float32)
        for a, z in head_pieces(hidden.shape[0], HEAD_ROWS):
            lp = torch.log_softmax(self.last_logits(hidden[a:z]), dim=-1)
            sel = (at >= a) & (at < z)
            tok_lp[sel] = lp[(at[sel] - a).to(lp.device), targets[sel].to(lp.device)].cpu()
        sums = torch.zeros(n_rows, dtype=torch.float64)
        sums.index_add_(0, torch.tensor(owner), tok_lp.double())
        return sums.tolist()

    def _score_batch(self, batch):
        """Each sequence's summed log-probability; with capture layers set, also their states
        [layers, batch, hidden] at the last token before the scored ones (where the shared-
        prefix path captures them too), else None."""
        torch = self.torch
        width = max(len(ids) for _, _, ids, _ in batch)
        pad = self.tok.pad_token_id
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        rows, cols, targets, owner = [], [], [], []
        for b, (_, _, ids, start) in enumerate(batch):
            input_ids[b, : len(ids)] = torch.tensor(ids)
            mask[b, : len(ids)] = 1
            for t in range(start, len(ids)):
                rows.append(b)
                cols.append(t - 1)  # the logits at t-1 predict token t
                targets.append(ids[t])
                owner.append(b)
        self.forward_tokens += sum(len(ids) for _, _, ids, _ in batch)
        capture = bool(self.capture_layers)
        with torch.inference_mode():
            out = self.decoder(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                output_hidden_states=capture,
            )
            picked = out.last_hidden_state[torch.tensor(rows), torch.tensor(cols)]
            lps = self._summed_logprobs(picked, range(len(targets)), targets, owner, len(batch))
            states = None
            if capture:
                at = torch.tensor([start - 1 for _, _, _, start in batch])
                row = torch.arange(len(batch))
                states = torch.stack([out.hidden_states[k][row, at] for k in self.capture_layers])
        return lps, states

    def hidden_support(self) -> str | None:
        """None: both scoring paths (shared prefix, and one sequence per option, which
        sliding-window rows and other attention implementations take) capture the states."""
        return None

    # generation --------------------------------------------------------------------------
    def last_logits(self, hidden):
        """Logits in fp32 (soft-capped where the model does) from last-position states, rounded
        to the model's dtype unless its head computes in fp32 (head_dtype "float32")."""
        logits = self.head(hidden).float()
        if self.softcap:
            logits = self.torch.tanh(logits / self.softcap) * self.softcap
        return logits

    def prefill(self, prompts: list[list[int]]):
        """Each prompt's KV ([layers, heads, len, dim] keys and values) and its last-position
        logits, computing only what the prompt KV cache does not already hold."""
        torch = self.torch
        reused = [self._kv.lookup(p) for p in prompts]
        c_len = [0 if kv is None else kv[0].shape[2] for kv in reused]
        n_new = [len(p) - c for p, c in zip(prompts, c_len, strict=True)]
        wc, wn = max(c_len), max(n_new)
        ids = torch.full((len(prompts), wn), self.tok.pad_token_id, dtype=torch.long)
        pos = torch.zeros((len(prompts), wn), dtype=torch.long)
        allowed = torch.zeros((len(prompts), wn, wc + wn), dtype=torch.bool)
        causal = torch.ones((wn, wn), dtype=torch.bool).tril()
        for b, (p, c, n) in enumerate(zip(prompts, c_len, n_new, strict=True)):
            ids[b, wn - n :] = torch.tensor(p[c:])
            pos[b, wn - n :] = torch.arange(c, len(p))
            allowed[b, :, wc - c : wc] = True
            allowed[b, :, wc:] = causal
            allowed[b, :, wc : wc + wn - n] = False
            allowed[b, : wn - n, : wc + wn] = False
            allowed[b, torch.arange(wn - n), wc + torch.arange(wn - n)] = True  # pads: themselves
        self.forward_tokens += sum(n_new)
        with torch.inference_mode():
            past = self._kv.assemble(reused, c_len, wc) if wc else self._empty_cache()
            masks = self._attention_masks(allowed, pos, c_len, wc)
            out = self.decoder(input_ids=ids.to(self.device), position_ids=pos.to(self.device),
                               attention_mask=masks, use_cache=True,
                               **({self._cache_kw: past} if past is not None else {}))  # fmt: skip
            keys = torch.stack([layer.keys for layer in out.past_key_values.layers])
            values = torch.stack([layer.values for layer in out.past_key_values.layers])
            last = self.last_logits(out.last_hidden_state[:, -1])
        kvs = []
        for b, (c, n) in enumerate(zip(c_len, n_new, strict=True)):
            cols = torch.cat([torch.arange(wc - c, wc), torch.arange(wc + wn - n, wc + wn)])
            cols = cols.to(keys.device)
            kvs.append((keys[:, b].index_select(2, cols), values[:, b].index_select(2, cols)))
        return kvs, last

    def stop_ids(self) -> set[int]:
        ids = {self.tok.eos_token_id}
        cfg = getattr(self.model, "generation_config", None)
        eos = getattr(cfg, "eos_token_id", None) if cfg is not None else None
        ids |= set(eos) if isinstance(eos, (list, tuple)) else {eos}
        return {i for i in ids if i is not None}

    def decode_slots(self, longest: int) -> int:
        """Rows decoded together: as many rows of `longest` tokens as an eighth of the free
        memory holds (the slot cache can widen to about twice that when rows that joined late
        outlive the first ones), the scoring batch's KV budget at least, and at most
        `slot_cap` (default 512 on a GPU, CPU_SLOTS on a CPU, where a step's time grows with
        its rows beyond that: docs/performance.md)."""
        from selfcorrect.backends.transformers.batching import free_bytes, kv_bytes_per_token

        per_token = kv_bytes_per_token(self.model.config, self.model.dtype.itemsize)
        cuda = self.device.startswith("cuda")
        cap = self.slot_cap or (512 if cuda else CPU_SLOTS)
        budget = self.batch_tokens * per_token * 4
        if not cuda:  # the scoring batch is small on a CPU; decoding wants many rows
            budget = max(budget, free_bytes(self.device) // 8)
        return int(max(1, min(cap, budget // max(per_token * longest, 1))))

    def generate(
        self, prompts: Sequence[str], max_tokens: int, sampling: Sampling | None = None,
        keys: Sequence[int] | None = None, on_done: Callable[[int, str], None] | None = None,
    ) -> list[str]:  # fmt: skip
        """Greedy unless `sampling`; sampled rows draw from their own generator seeded with
        keys[i] (else the sampling seed), whatever the batch. `on_done(i, text)` is called as
        row i finishes (in the decode loop, while other rows go on)."""
        from selfcorrect.backends.transformers.decode import Decoder

        encoded = [self._encode(p) for p in prompts]
        for r, ids in enumerate(encoded):  # the prompt and its new tokens must fit
            check_length(r, len(ids) + max_tokens, self.max_len)
        # a decoder with one mask for all layers makes its sliding-window layers attend to
        # the whole row: the loop is exact there only for rows that fit the window; longer
        # rows (and attention kernels that do not take a ready mask) go through
        # model.generate. Gemma 3 takes a mask per layer type: the loop cuts its window.
        loop = [] if not self.prefix_cache else [
            r for r, ids in enumerate(encoded)
            if self._window is None or self._mask_per_type
            or len(ids) + max_tokens <= self._window
        ]  # fmt: skip
        texts: list[str] = [""] * len(prompts)
        if loop:
            longest = max(len(encoded[r]) for r in loop) + max_tokens
            decoder = Decoder(self, self.decode_slots(longest), self.stop_ids())
            emit = None if on_done is None else (
                lambda i, toks: on_done(loop[i], self.tok.decode(toks, skip_special_tokens=True))
            )  # fmt: skip
            sub_keys = None if keys is None else [keys[r] for r in loop]
            outs = decoder.run([encoded[r] for r in loop], max_tokens, sampling, sub_keys, emit)
            self.decode_steps = getattr(self, "decode_steps", 0) + decoder.steps
            self.generated_tokens = getattr(self, "generated_tokens", 0) + decoder.tokens
            self.decode_log = decoder.step_log  # the last call's (rows, seconds) per step
            for r, o in zip(loop, outs, strict=True):
                texts[r] = self.tok.decode(o, skip_special_tokens=True)
        rest = sorted(set(range(len(prompts))) - set(loop))
        if rest:
            sub_keys = None if keys is None else [keys[r] for r in rest]
            done = self.generate_hf([prompts[r] for r in rest], max_tokens, sampling, sub_keys)
            for r, text in zip(rest, done, strict=True):
                texts[r] = text
                if on_done:
                    on_done(r, text)
        return texts

    def generate_hf(self, prompts, max_tokens, sampling=None, keys=None) -> list[str]:
        """`model.generate`, a few rows at a time: the reference the decode loop is tested
        against, and the path for rows the loop cannot decode exactly (sliding-window models
        whose decoder takes one mask, beyond the window; attention kernels that take no ready
        mask). Sampled rows with keys run one at a time, each seeded with its key."""
        torch = self.torch
        if sampling is None:  # explicit: some chat models' configs sample by default
            how = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        else:
            how = {"do_sample": True, "temperature": sampling.temperature,
                   "top_p": sampling.top_p, "top_k": None}  # fmt: skip
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[str] = [""] * len(prompts)
        self.tok.padding_side = "left"
        step = 1 if sampling is not None else max(1, self.batch_tokens // 512)
        for k in range(0, len(order), step):
            idx = order[k : k + step]
            if sampling is not None:
                torch.manual_seed(int(keys[idx[0]]) if keys is not None else sampling.seed)
            enc = self.tok([prompts[i] for i in idx], return_tensors="pt", padding=True,
                           add_special_tokens=not self.chat).to(self.device)  # fmt: skip
            with torch.inference_mode():
                out = self.model.generate(**enc, max_new_tokens=max_tokens,
                                          pad_token_id=self.tok.pad_token_id, **how)  # fmt: skip
            new = out[:, enc["input_ids"].shape[1] :]
            for i, ids in zip(idx, new, strict=True):
                results[i] = self.tok.decode(ids, skip_special_tokens=True)
        return results
