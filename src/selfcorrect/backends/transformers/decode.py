"""Batched decoding for throughput: many rows decoded together in a preallocated KV cache,
rows that finish leave and waiting rows join (continuous batching), logits only at the last
position, prompts continued from the prompt KV cache, and one random generator per row, so a
sampled text depends only on its own seed, never on which rows share its batch.

The cache holds `slots` rows side by side. Every row's newest token is written at the same
column `t`; a row's tokens end there and start at its own `start` column (left padding,
masked). Active rows occupy the first slots; a row that finishes gives its slot to the last
active row (one row copied). A row joins by copying its prompt's KV (prefilled in a batch of
joiners) so that it ends at column `t`; when the columns run out, the cache is shifted left by
the width no active row uses."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from selfcorrect.errors import SelfCorrectError


class _SlotLayer(DynamicLayer):
    """One layer's view of the slot cache: writes the new tokens at column t, returns the
    columns up to them (a view: no copy per step)."""

    def __init__(self, owner: SlotCache, layer: int):
        super().__init__()
        self.owner, self.layer = owner, layer
        self.is_initialized = True

    def update(self, key_states, value_states, *args, **kwargs):
        o = self.owner
        n, q = key_states.shape[0], key_states.shape[2]
        o.keys[self.layer, :n, :, o.t : o.t + q] = key_states
        o.values[self.layer, :n, :, o.t : o.t + q] = value_states
        return o.keys[self.layer, :n, :, : o.t + q], o.values[self.layer, :n, :, : o.t + q]

    def get_seq_length(self) -> int:
        return self.owner.t

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.t + query_length, 0


class SlotCache(DynamicCache):
    """Keys and values of `slots` rows in two preallocated tensors [layers, slots, heads,
    width, dim]; `t` is the column the next token of every row is written at."""

    def __init__(self, torch, layers, slots, heads, width, dim, dtype, device):
        super().__init__()
        shape = (layers, slots, heads, width, dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.t = 0
        self.layers = [_SlotLayer(self, i) for i in range(layers)]
        self.layer_class_to_replicate = None

    @property
    def width(self) -> int:
        return self.keys.shape[3]

    def move(self, src: int, dst: int) -> None:
        self.keys[:, dst] = self.keys[:, src]
        self.values[:, dst] = self.values[:, src]

    def shift(self, by: int, n: int) -> None:
        """Move the first n rows' columns by `by` (left when negative), t with them."""
        t = self.t
        for buf in (self.keys, self.values):
            if by < 0:
                buf[:, :n, :, : t + by] = buf[:, :n, :, -by:t].clone()
            else:
                buf[:, :n, :, by : t + by] = buf[:, :n, :, :t].clone()
                buf[:, :n, :, :by] = 0
        self.t = t + by


@dataclass
class _Row:
    index: int  # position in the call's prompts
    prompt: list[int]
    generator: object | None  # torch.Generator when sampling
    out: list[int] = field(default_factory=list)
    start: int = 0  # the cache column its tokens start at
    done: bool = False


class Decoder:
    """Decodes token lists for a TransformersBackend (its model, head, prompt KV cache)."""

    def __init__(self, backend, slots: int, stop_ids: set[int]):
        self.b = backend
        self.torch = backend.torch
        self.slots = slots
        self.stop = stop_ids
        cfg = getattr(backend.model.config, "text_config", None) or backend.model.config
        heads = cfg.num_attention_heads
        self.kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        self.head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
        self.layers = cfg.num_hidden_layers
        self.steps = 0  # decode forwards, for throughput accounting
        self.tokens = 0  # tokens generated
        self.step_log: list[tuple[int, float]] = []  # (rows, seconds) of each decode step
        self.on_done = None  # called with (row index, tokens) as a row finishes

    def run(self, prompts: list[list[int]], max_tokens: int, sampling, keys,
            on_done=None) -> list[list[int]]:  # fmt: skip
        """Every prompt's new tokens; on_done(i, tokens) as row i finishes."""
        self.on_done = on_done
        torch = self.torch
        rows = []
        for i, p in enumerate(prompts):
            gen = None
            if sampling is not None:
                gen = torch.Generator(device="cpu")
                gen.manual_seed(int(keys[i]) if keys is not None else int(sampling.seed))
            rows.append(_Row(i, p, gen))
        pending = deque(sorted(rows, key=lambda r: -len(r.prompt)))  # longest first: t fits
        width = max(len(p) for p in prompts) + max_tokens + 8
        slots = min(self.slots, len(rows))
        cache = SlotCache(torch, self.layers, slots, self.kv_heads, width, self.head_dim,
                          self.b.model.dtype, self.b.device)  # fmt: skip
        active: list[_Row] = []
        while pending or active:
            if pending and len(active) < slots and (not active or len(active) <= slots * 3 // 4):
                self._admit(cache, active, pending, slots - len(active), max_tokens, sampling)
            if active:
                self._step(cache, active, max_tokens, sampling)
        return [r.out for r in rows]

    # joining -----------------------------------------------------------------------------
    def _admit(self, cache, active, pending, room, max_tokens, sampling) -> None:
        """Prefill up to `room` waiting rows in one batch and place them in free slots."""
        new = [pending.popleft() for _ in range(min(room, len(pending)))]
        kvs, last = self.b.prefill([r.prompt for r in new])
        span = max(len(r.prompt) for r in new)
        n = len(active)
        if cache.t + max_tokens + 1 > cache.width:  # drop the columns nobody uses any more
            self._compact(cache, active)
        if cache.t < span:  # make room on the left for the longer prompts
            cache.shift(span - cache.t, n)
        self._grow(cache, cache.t + max_tokens + 1)
        t = cache.t
        for j, (row, (k, v)) in enumerate(zip(new, kvs, strict=True)):
            slot, size = n + j, len(row.prompt)
            cache.keys[:, slot, :, : t - size] = 0  # masked columns: zeros, never garbage
            cache.values[:, slot, :, : t - size] = 0
            cache.keys[:, slot, :, t - size : t] = k
            cache.values[:, slot, :, t - size : t] = v
            row.start = t - size
            active.append(row)
        for row, tok in zip(new, self._choose(last, new, sampling), strict=True):
            self._append(row, tok, max_tokens)
        self._retire(cache, active)

    def _compact(self, cache, active) -> None:
        """Drop the leading columns no active row uses."""
        lead = min((r.start for r in active), default=cache.t)
        if lead > 0:
            cache.shift(-lead, len(active))
            for r in active:
                r.start -= lead

    def _grow(self, cache, need: int) -> None:
        """Rare: a row longer than the cache was sized for; widen it."""
        torch = self.torch
        if need <= cache.width:
            return
        need = max(need, cache.width + cache.width // 2)
        for name in ("keys", "values"):
            buf = getattr(cache, name)
            pad = torch.zeros((*buf.shape[:3], need - buf.shape[3], buf.shape[4]),
                              dtype=buf.dtype, device=buf.device)  # fmt: skip
            setattr(cache, name, torch.cat([buf, pad], dim=3))

    # decoding ----------------------------------------------------------------------------
    def _step(self, cache, active, max_tokens, sampling) -> None:
        torch = self.torch
        if cache.t + 1 > cache.width:
            self._compact(cache, active)
            self._grow(cache, cache.t + 1)
        t, began = cache.t, time.perf_counter()
        ids = torch.tensor([[r.out[-1]] for r in active], device=self.b.device)
        pos = torch.tensor([[t - r.start] for r in active], device=self.b.device)
        starts = torch.tensor([r.start for r in active], device=self.b.device)
        allowed = torch.arange(t + 1, device=self.b.device)[None, :] >= starts[:, None]
        with torch.inference_mode():
            out = self.b.decoder(
                input_ids=ids, attention_mask=self._masks(allowed, t), position_ids=pos,
                use_cache=True, **{self.b._cache_kw: cache},
            )  # fmt: skip
            cache.t = t + 1
            logits = self.b.last_logits(out.last_hidden_state[:, -1])
        self.steps += 1
        rows = len(active)
        for row, tok in zip(active, self._choose(logits, active, sampling), strict=True):
            self._append(row, tok, max_tokens)
        self._retire(cache, active)
        self.step_log.append((rows, time.perf_counter() - began))

    def _masks(self, allowed, t: int):
        """The step's mask; for a model with a mask per layer type (Gemma 3) also its
        sliding-window layers' copy: every row's query sits at column t, so the keys within
        its window are the columns after t - window, whatever the row's start (the rule of
        backend._attention_masks: key position > query position - window)."""
        mask = self.b._mask4d(allowed[:, None, :])
        if not self.b._mask_per_type:
            return mask
        cols = self.torch.arange(allowed.shape[1], device=allowed.device)[None, :]
        near = self.b._mask4d((allowed & (cols > t - self.b._window))[:, None, :])
        return {"full_attention": mask, "sliding_attention": near}

    def _choose(self, logits, rows, sampling) -> list[int]:
        """Greedy, or each row's own draw at the temperature, nucleus `top_p`.

        Sampling is by inverse CDF: one uniform per row from the row's own generator, the
        cumulative weights of all rows in one batched pass. torch.multinomial per row cost
        about 2 ms a row (0.12 s a step at 64 rows, measured); this costs a few ms a step and
        still draws each row's token from its own seed alone."""
        torch = self.torch
        if sampling is None:
            return logits.argmax(dim=-1).tolist()
        scaled = logits.float().cpu() / sampling.temperature
        weights = (scaled - scaled.amax(-1, keepdim=True)).exp_()
        if sampling.top_p < 1.0:  # the nucleus from a per-row cumsum (a batched sum would be
            # split over threads differently for one row than for many)
            top, order = weights.sort(dim=-1, descending=True)
            run = top.double().cumsum(-1)
            keep = (run - top) < sampling.top_p * run[:, -1:]
            weights = torch.zeros_like(weights).scatter(-1, order, top * keep)
        cdf = weights.double().cumsum_(-1)  # float64: the tail's mass is not rounded away
        total = cdf[:, -1:].contiguous()  # searchsorted copies (and warns about) a column view
        if not (torch.isfinite(total).all() and (total > 0).all()):
            raise SelfCorrectError("sampling: the model's logits are not finite numbers")
        u = torch.cat([torch.rand(1, generator=r.generator, dtype=torch.float64) for r in rows])
        pick = torch.searchsorted(cdf, u[:, None] * total, right=True)
        last = torch.searchsorted(cdf, total)  # the last token with mass: u * total rounding up
        return torch.minimum(pick, last).squeeze(1).tolist()

    def _append(self, row: _Row, tok: int, max_tokens: int) -> None:
        row.out.append(tok)
        self.tokens += 1
        if tok in self.stop or len(row.out) >= max_tokens:
            row.done = True

    def _retire(self, cache, active) -> None:
        """Finished rows leave; the last active row takes each freed slot. Their KV (prompt
        and text, without the last token) stays in the prompt KV cache for the next turn."""
        k = 0
        while k < len(active):
            row = active[k]
            if not row.done:
                k += 1
                continue
            kept = len(row.prompt) + len(row.out) - 1
            end = row.start + kept
            self.b._kv.put(row.prompt + row.out[:-1], cache.keys[:, k, :, row.start : end],
                           cache.values[:, k, :, row.start : end])  # fmt: skip
            last = len(active) - 1
            if k != last:
                cache.move(last, k)
                active[k] = active[last]
            active.pop()
            if self.on_done is not None:
                self.on_done(row.index, row.out)
