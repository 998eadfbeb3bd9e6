"""Hugging Face transformers backend: bf16 on CPU by default, GPU when present."""

from __future__ import annotations

import inspect
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from selfcorrect.backends.base import (
    ChatRendering,
    Sampling,
    ScoreResult,
    candidate_tokens,
    continues_prefill,
)
from selfcorrect.errors import SelfCorrectError
from selfcorrect.registry import ResolvedModel, cache_dir

_CACHE_FORMAT = 1  # bump when the layout of the dequantised cache changes


def _quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformers")


def _dequantised_copy(resolved: ResolvedModel, dtype) -> Path:
    """Load a GGUF once (slow: dequantises every tensor), save model and tokenizer as
    safetensors under the cache keyed by the file's sha256; later loads take about a second.
    Written into a temporary folder and renamed, so an interrupted save leaves nothing behind."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / "hf" / f"{resolved.sha256[:24]}-v{_CACHE_FORMAT}"
    if (target / "selfcorrect.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    src, name = str(resolved.path.parent), resolved.path.name
    try:
        tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.bfloat16)
    except Exception as exc:  # transformers raises many types for a bad file
        raise SelfCorrectError(f"cannot load GGUF {resolved.path}: {exc}") from None
    model.hf_quantizer = None  # weights are plain tensors now; save_pretrained needs this
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "selfcorrect.json").write_text(
            json.dumps({"source": str(resolved.path), "sha256": resolved.sha256})
        )
        os.replace(tmp, target)
    except OSError:
        if target.is_dir():  # another process won the race
            return target
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


class TransformersBackend(ChatRendering):
    name = "transformers"

    def __init__(
        self,
        resolved: ResolvedModel,
        dtype: str = "bfloat16",
        device: str | None = None,
        batch_tokens: int = 4096,
        trust_remote_code: bool = False,
        prefix_cache: bool = True,
        kv_budget_tokens: int = 32768,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _quiet_transformers()
        if dtype not in ("bfloat16", "float32", "float16"):
            raise SelfCorrectError(f"unknown dtype '{dtype}' (valid: bfloat16, float16, float32)")
        self.torch = torch
        self.device = _pick_device(device)
        self.dtype = getattr(torch, dtype)
        self.batch_tokens = batch_tokens
        self.prefix_cache = prefix_cache
        self.kv_budget = kv_budget_tokens
        folder = (
            resolved.path if resolved.source == "hf-dir" else _dequantised_copy(resolved, dtype)
        )
        try:
            self.tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
            self.model = AutoModelForCausalLM.from_pretrained(
                folder, dtype=self.dtype, trust_remote_code=trust_remote_code
            ).to(self.device)
        except (OSError, ValueError) as exc:
            raise SelfCorrectError(f"cannot load model from {folder}: {exc}") from None
        self.model.eval()
        has_template = bool(getattr(self.tok, "chat_template", None))
        kind = resolved.kind or ("chat" if has_template else "base")
        if kind == "chat" and not has_template:
            raise SelfCorrectError(
                f"model '{resolved.name}' is listed as chat but has no chat template"
            )
        self.chat = kind == "chat"
        self.model_name = resolved.name
        self.prefill_problem = continues_prefill(self.tok) if self.chat else None
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.decoder = self.model.get_decoder()
        # newer transformers renamed the decoder's cache argument
        params = inspect.signature(self.decoder.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        full_attention = set(getattr(self.model.config, "layer_types", None) or ["full_attention"])
        self._kv = PromptKV(torch, self.kv_budget if full_attention == {"full_attention"} else 0)
        self.head = self.model.get_output_embeddings()
        self.softcap = getattr(self.model.config, "final_logit_softcapping", None)
        self.info = {
            "engine": "transformers",
            "transformers_version": __import__("transformers").__version__,
            "torch_version": torch.__version__,
            "dtype": dtype,
            "device": self.device,
            "prompt_format": "chat-template" if self.chat else "human-assistant",
            "threads": torch.get_num_threads(),
        }

    def _encode(self, text: str) -> list[int]:
        # A chat template writes its own BOS/special tokens; plain text gets the tokenizer's.
        return self.tok(text, add_special_tokens=not self.chat)["input_ids"]

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
        for r, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
            fulls, start = candidate_tokens(self._encode, prompt, cands)
            seqs.extend((r, j, ids, start) for j, ids in enumerate(fulls))
        out = [[0.0] * len(c) for c in candidates]
        ntok = [[0] * len(c) for c in candidates]
        for batch in _length_batches(seqs, self.batch_tokens):
            for (r, j, ids, start), lp in zip(batch, self._score_batch(batch), strict=True):
                out[r][j] = lp
                ntok[r][j] = len(ids) - start
        return [ScoreResult(tuple(o), tuple(n)) for o, n in zip(out, ntok, strict=True)]

    def _score_shared_prefix(self, prompts, candidates) -> list[ScoreResult]:
        """One forward per prompt: the shared prefix is computed once (left-padded batch),
        then all options of every prompt continue from its KV cache in a second, tiny pass."""
        reqs = []
        for r, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
            fulls, start = candidate_tokens(self._encode, prompt, cands)
            reqs.append((r, fulls[0][:start], [ids[start:] for ids in fulls]))
        out: list[ScoreResult | None] = [None] * len(prompts)
        by_k: dict[int, list] = {}
        for req in reqs:  # the cache is repeated K times: batch prompts with K options together
            by_k.setdefault(len(req[2]), []).append(req)
        for group in by_k.values():
            for batch in _length_batches(group, self.batch_tokens, key=lambda q: q[1]):
                for (r, _, sufs), lps in zip(batch, self._score_cached_batch(batch), strict=True):
                    out[r] = ScoreResult(tuple(lps), tuple(len(s) for s in sufs))
        return out

    def _score_cached_batch(self, batch) -> list[list[float]]:
        """Layout per row: [pad | reused KV of an earlier prompt | pad | new prompt tokens],
        then the options. Positions are explicit, holes are masked."""
        torch = self.torch
        pad = self.tok.pad_token_id
        n_opts = len(batch[0][2])
        reused = [self._kv.lookup(prefix) for _, prefix, _ in batch]
        c_len = [0 if kv is None else kv[0][0].shape[1] for kv in reused]
        width_c = max(c_len)
        width = max(len(p) - c for (_, p, _), c in zip(batch, c_len, strict=True))
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width_c + width), dtype=torch.long)
        pos = torch.zeros((len(batch), width), dtype=torch.long)
        for b, ((_, prefix, _), c) in enumerate(zip(batch, c_len, strict=True)):
            new = prefix[c:]
            ids[b, width - len(new) :] = torch.tensor(new)
            pos[b, width - len(new) :] = torch.arange(c, len(prefix))
            mask[b, width_c - c : width_c] = 1
            mask[b, width_c + width - len(new) :] = 1
        lens = torch.tensor([len(p) for _, p, _ in batch])
        sufs = [s for _, _, opts in batch for s in opts]  # row b*K + j
        slen = max(len(s) for s in sufs)
        with torch.inference_mode():
            past = self._kv.assemble(reused, c_len, width_c) if width_c else None
            first = self.decoder(
                input_ids=ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=pos.to(self.device),
                use_cache=True,
                **({self._cache_kw: past} if past is not None else {}),
            )
            self._kv.store([p for _, p, _ in batch], first.past_key_values, mask)
            # the last prefix position predicts every option's first token
            heads = [first.last_hidden_state[:, -1].repeat_interleave(n_opts, 0)]
            if slen > 1:  # options' own tokens predict their next ones, from the shared cache
                cache = first.past_key_values
                cache.batch_repeat_interleave(n_opts)
                sids = torch.full((len(sufs), slen - 1), pad, dtype=torch.long)
                smask = torch.zeros((len(sufs), slen - 1), dtype=torch.long)
                for i, s in enumerate(sufs):
                    sids[i, : len(s) - 1] = torch.tensor(s[:-1])
                    smask[i, : len(s) - 1] = 1
                spos = lens.repeat_interleave(n_opts)[:, None] + torch.arange(slen - 1)[None]
                second = self.decoder(
                    input_ids=sids.to(self.device),
                    attention_mask=torch.cat([mask.repeat_interleave(n_opts, 0), smask], 1).to(
                        self.device
                    ),
                    position_ids=spos.to(self.device),
                    use_cache=True,
                    **{self._cache_kw: cache},
                )
                heads.append(second.last_hidden_state)
            rows, targets, owner = [], [], []
            for i, s in enumerate(sufs):
                for t, tok in enumerate(s):
                    rows.append((0, i) if t == 0 else (1, i, t - 1))
                    targets.append(tok)
                    owner.append(i)
            hidden = torch.stack(
                [heads[0][r[1]] if r[0] == 0 else heads[1][r[1], r[2]] for r in rows]
            )
            flat = self._summed_logprobs(hidden, targets, owner, len(sufs))
        return [flat[b * n_opts : (b + 1) * n_opts] for b in range(len(batch))]

    def _summed_logprobs(self, hidden, targets, owner, n_rows) -> list[float]:
        """Logits only at the positions read, log-softmax in fp32, summed per row in fp64."""
        torch = self.torch
        logits = self.head(hidden).float()
        if self.softcap:
            logits = torch.tanh(logits / self.softcap) * self.softcap
        lp = torch.log_softmax(logits, dim=-1)
        tok_lp = lp[torch.arange(len(targets)), torch.tensor(targets, device=lp.device)]
        sums = torch.zeros(n_rows, dtype=torch.float64)
        sums.index_add_(0, torch.tensor(owner), tok_lp.double().cpu())
        return sums.tolist()

    def _score_batch(self, batch) -> list[float]:
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
        with torch.inference_mode():
            hidden = self.decoder(
                input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device)
            ).last_hidden_state
            picked = hidden[torch.tensor(rows), torch.tensor(cols)]
            return self._summed_logprobs(picked, targets, owner, len(batch))

    # generation --------------------------------------------------------------------------
    def generate(
        self, prompts: Sequence[str], max_tokens: int, sampling: Sampling | None = None
    ) -> list[str]:
        torch = self.torch
        if sampling is None:  # explicit: some chat models' configs sample by default
            how = {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        else:
            torch.manual_seed(sampling.seed)
            how = {
                "do_sample": True,
                "temperature": sampling.temperature,
                "top_p": sampling.top_p,
                "top_k": None,
            }
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[str] = [""] * len(prompts)
        self.tok.padding_side = "left"
        step = max(1, self.batch_tokens // 512)
        for k in range(0, len(order), step):
            idx = order[k : k + step]
            enc = self.tok(
                [prompts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                add_special_tokens=not self.chat,
            ).to(self.device)
            with torch.inference_mode():
                out = self.model.generate(
                    **enc,
                    max_new_tokens=max_tokens,
                    pad_token_id=self.tok.pad_token_id,
                    return_dict_in_generate=True,
                    **how,
                )
            width = enc["input_ids"].shape[1]
            new = out.sequences[:, width:]
            for i, ids in zip(idx, new, strict=True):
                results[i] = self.tok.decode(ids, skip_special_tokens=True)
            cache = getattr(out, "past_key_values", None)
            if cache is not None and new.shape[1] > 1:
                # keep the conversation so far (prompt + reasoning) for the next turn's prompt
                mask = torch.cat(
                    [
                        enc["attention_mask"].cpu(),
                        torch.ones((len(idx), new.shape[1] - 1), dtype=torch.long),
                    ],
                    1,
                )
                seqs = [
                    [t for t, m in zip(row.tolist(), mrow.tolist(), strict=False) if m]
                    for row, mrow in zip(out.sequences.cpu(), mask, strict=True)
                ]
                self._kv.store(seqs, cache, mask)
        return results


class PromptKV:
    """Keeps the KV cache of recently scored prompts, so that a later prompt that extends one
    (the next feedback round, the answer turn after reasoning) computes only its new tokens.
    Bounded by a token budget, least recently used first out. Off (budget 0) for models with
    sliding-window layers, whose caches cannot be spliced this way."""

    def __init__(self, torch, budget_tokens: int):
        self.torch = torch
        self.budget = budget_tokens
        self.entries: dict[tuple, list] = {}  # token tuple -> [(keys, values) per layer]
        self.arrays: dict[tuple, np.ndarray] = {}  # the same tokens as an array, for lookup
        self.used = 0
        self.hits = 0

    MIN_SHARED = 16  # shorter shared prefixes are not worth splicing

    def clear(self) -> None:
        self.entries.clear()
        self.arrays.clear()
        self.used = 0

    def lookup(self, prefix: list[int]):
        """The KV of the longest run of leading tokens that a stored sequence shares with
        `prefix` (at most all but its last token), or None."""
        if not self.budget or not self.entries:
            return None
        want = np.asarray(prefix, dtype=np.int64)
        best_key, best_n = None, 0
        for key in self.entries:
            n = min(len(key), len(prefix) - 1)
            if n <= best_n:
                continue
            differ = np.flatnonzero(self.arrays[key][:n] != want[:n])
            shared = int(differ[0]) if differ.size else n
            if shared > best_n:
                best_key, best_n = key, shared
        if best_n < self.MIN_SHARED:
            return None
        self.entries[best_key] = self.entries.pop(best_key)  # most recently used
        self.hits += 1
        return [(k[:, :best_n], v[:, :best_n]) for k, v in self.entries[best_key]]

    def assemble(self, reused, c_len, width):
        """A batch cache: each row's reused KV, left-padded to `width`."""
        from transformers import DynamicCache

        cache = DynamicCache()
        template = next(kv for kv in reused if kv is not None)
        for layer, (k0, v0) in enumerate(template):
            keys = k0.new_zeros((len(reused), k0.shape[0], width, k0.shape[2]))
            values = v0.new_zeros((len(reused), v0.shape[0], width, v0.shape[2]))
            for b, (kv, c) in enumerate(zip(reused, c_len, strict=True)):
                if kv is not None:
                    keys[b, :, width - c :] = kv[layer][0]
                    values[b, :, width - c :] = kv[layer][1]
            cache.update(keys, values, layer)
        return cache

    def store(self, sequences, cache, mask) -> None:
        """Keep row b's KV (the columns where mask[b] is 1) under the tokens sequences[b]."""
        if not self.budget:
            return
        torch = self.torch
        layers = [(layer.keys, layer.values) for layer in cache.layers]
        for b, tokens in enumerate(sequences):
            idx = torch.nonzero(mask[b], as_tuple=True)[0][: len(tokens)]
            idx = idx.to(layers[0][0].device)
            key = tuple(tokens[: len(idx)])
            if key in self.entries:
                continue
            self.entries[key] = [
                (k[b].index_select(1, idx), v[b].index_select(1, idx)) for k, v in layers
            ]
            self.arrays[key] = np.asarray(key, dtype=np.int64)
            self.used += len(key)
        while self.used > self.budget and self.entries:
            oldest = next(iter(self.entries))
            self.used -= len(oldest)
            del self.entries[oldest], self.arrays[oldest]


def _length_batches(seqs, budget: int, key=lambda s: s[2]):
    """Length-sorted batches whose padded size stays within `budget` tokens."""
    ordered = sorted(seqs, key=lambda s: len(key(s)))
    batch: list = []
    for s in ordered:
        if batch and len(key(s)) * (len(batch) + 1) > budget:
            yield batch
            batch = []
        batch.append(s)
    if batch:
        yield batch
