"""The prompt KV cache: keys and values of recently computed prompts, found by block hashes of
their leading tokens, so a later prompt that extends one computes only its new tokens."""

from __future__ import annotations

import itertools

import numpy as np


class PromptKV:
    """Keeps the KV cache of recently scored prompts, so that a later prompt that extends one
    (the next feedback round, the answer turn after reasoning) computes only its new tokens.
    Bounded by a token budget, least recently used first out. Off (budget 0) for models with
    sliding-window layers whose decoder takes one mask for all layers (their windows cannot be
    cut by position); Gemma 3 takes a mask per layer type, so it keeps whole rows here."""

    def __init__(self, torch, budget_tokens: int):
        self.torch = torch
        self.budget = budget_tokens
        self.entries: dict[tuple, tuple] = {}  # tokens -> (keys, values), [L, H, T, D]
        self.arrays: dict[tuple, np.ndarray] = {}  # the same tokens as an array, for lookup
        self.chains: dict[tuple, list[int]] = {}  # entry -> hashes of its leading blocks
        self.index: dict[int, dict[tuple, None]] = {}  # block-chain hash -> entries having it
        self.used = 0
        self.hits = 0

    BLOCK = 16  # shared prefixes are found block by block; shorter ones are not worth splicing

    @classmethod
    def _chain(cls, tokens, n_blocks: int):
        """Hash of tokens[: BLOCK * (j+1)] for each j, built incrementally."""
        h = 0
        for j in range(n_blocks):
            h = hash((h, tuple(tokens[j * cls.BLOCK : (j + 1) * cls.BLOCK])))
            yield h

    def clear(self) -> None:
        self.entries.clear()
        self.arrays.clear()
        self.chains.clear()
        self.index.clear()
        self.used = 0

    def _best(self, prefix) -> tuple[tuple | None, int]:
        """The stored sequence sharing the longest run of leading tokens with `prefix` (at
        most all but its last token) and that run's length; (None, 0) below one block. The
        block index narrows the candidates to the entries sharing the most whole blocks; the
        most recent few are compared exactly."""
        if not self.budget or not self.entries:
            return None, 0
        limit = len(prefix) - 1
        candidates = None
        for h in self._chain(prefix, limit // self.BLOCK):
            found = self.index.get(h)
            if not found:
                break
            candidates = found
        if candidates is None:
            return None, 0
        want = np.asarray(prefix[:limit], dtype=np.int64)
        best_key, best_n = None, 0
        for key in itertools.islice(reversed(candidates), 4):  # they differ by < one block
            n = min(len(key), limit)
            differ = np.flatnonzero(self.arrays[key][:n] != want[:n])
            shared = int(differ[0]) if differ.size else n
            if shared > best_n:
                best_key, best_n = key, shared
        return (best_key, best_n) if best_n >= self.BLOCK else (None, 0)

    def peek(self, prefix) -> int:
        """How many leading tokens of `prefix` a lookup would reuse now."""
        return self._best(prefix)[1]

    def lookup(self, prefix: list[int]):
        """The KV (keys, values: [layers, heads, tokens, dim]) of the longest stored run
        `prefix` starts with, or None; marks that entry most recently used."""
        best_key, best_n = self._best(prefix)
        if best_key is None:
            return None
        self.entries[best_key] = self.entries.pop(best_key)  # most recently used
        self.hits += 1
        keys, values = self.entries[best_key]
        return keys[:, :, :best_n], values[:, :, :best_n]

    def assemble(self, reused, c_len, width):
        """A batch cache: each row's reused KV, left-padded to `width`. Entries hold all
        layers in one tensor, so a row costs two copies, not two per layer."""
        from transformers import DynamicCache

        k0, v0 = next(kv for kv in reused if kv is not None)  # [layers, heads, tokens, dim]
        layers, heads, _, dim = k0.shape
        keys = k0.new_empty((layers, len(reused), heads, width, dim))
        values = v0.new_empty((layers, len(reused), v0.shape[1], width, v0.shape[3]))
        for b, (kv, c) in enumerate(zip(reused, c_len, strict=True)):
            # masked columns still enter the attention's products: zeros, never garbage
            keys[:, b, :, : width - c] = 0
            values[:, b, :, : width - c] = 0
            if kv is not None:
                keys[:, b, :, width - c :] = kv[0]
                values[:, b, :, width - c :] = kv[1]
        cache = DynamicCache()
        for layer in range(layers):
            cache.update(keys[layer], values[layer], layer)
        return cache

    def store(self, sequences, cache, mask, reused=None) -> None:
        """Keep row b's KV (the columns where mask[b] is true) under the tokens sequences[b].
        With `reused` (each row's KV spliced in front by `assemble`, or None), those leading
        columns are taken from it as they are, and only the newly computed ones are gathered
        from the cache."""
        if not self.budget:
            return
        torch = self.torch
        new = [b for b, tokens in enumerate(sequences) if tuple(tokens) not in self.entries]
        if not new:
            return
        spliced = [] if reused is None else [kv for kv in reused if kv is not None]
        first = max((kv[0].shape[2] for kv in spliced), default=0)  # the spliced width
        # all layers in one tensor: one gather per row instead of one per layer
        keys = torch.stack([layer.keys[:, :, first:] for layer in cache.layers])  # [L,B,H,T,D]
        values = torch.stack([layer.values[:, :, first:] for layer in cache.layers])
        for b in new:
            old = None if reused is None else reused[b]
            n_old = 0 if old is None else old[0].shape[2]
            tokens = sequences[b]
            idx = torch.nonzero(mask[b, first:], as_tuple=True)[0][: len(tokens) - n_old]
            idx = idx.to(keys.device)
            key = tuple(tokens[: n_old + len(idx)])
            if key in self.entries:
                continue
            k, v = keys[:, b].index_select(2, idx), values[:, b].index_select(2, idx)
            if old is not None:
                k, v = torch.cat([old[0], k], 2), torch.cat([old[1], v], 2)
            self._add(key, k, v)
        self._evict()

    def put(self, tokens, keys, values) -> None:
        """Keep one sequence's KV ([layers, heads, len(tokens), dim]) under its tokens."""
        if not self.budget or len(tokens) < self.BLOCK:
            return
        key = tuple(tokens)
        if key in self.entries:
            return
        self._add(key, keys.clone(), values.clone())
        self._evict()

    def _add(self, key, k, v) -> None:
        self.entries[key] = (k, v)
        self.arrays[key] = np.asarray(key, dtype=np.int64)
        self.chains[key] = list(self._chain(key, len(key) // self.BLOCK))
        for h in self.chains[key]:
            self.index.setdefault(h, {})[key] = None
        self.used += len(key)

    def _evict(self) -> None:
        while self.used > self.budget and self.entries:
            oldest = next(iter(self.entries))
            self.used -= len(oldest)
            for h in self.chains.pop(oldest):
                del self.index[h][oldest]
                if not self.index[h]:
                    del self.index[h]
            del self.entries[oldest], self.arrays[oldest]
