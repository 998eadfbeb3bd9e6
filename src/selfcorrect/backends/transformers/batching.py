"""How much goes into one forward: memory sizing, the padding-aware batcher, and the request
rows the scorer builds."""

from __future__ import annotations

import itertools
import os
from typing import NamedTuple


def kv_bytes_per_token(config, dtype_bytes: int = 2) -> int:
    """Keys and values of one token over all layers."""
    text = getattr(config, "text_config", None) or config
    heads = text.num_attention_heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * dtype_bytes


def free_bytes(device: str) -> int:
    """Memory free for new tensors: the GPU's free memory, or what the OS calls available
    (free pages and reclaimable page cache: a model just read from disk fills the latter)."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.mem_get_info(torch.device(device))[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 << 30


PROMPT_KV_TOKENS = 32768  # the prompt KV cache's default budget
HEAD_ROWS = 512  # least rows per piece of the scoring head's GEMM (head_pieces)


def auto_batch_tokens(config, device: str, reserved_kv_tokens: int = 0, cap: int = 32768) -> int:
    """Padded tokens per scoring forward that fit memory. Per token: the batch's KV, whose
    width can double when a reused prefix is spliced in front, held up to four times at once
    (the spliced cache, the cache the forward extends, the stacked layers the prompt KV cache
    gathers from, its kept copy), and the widest activations. On a GPU, 60% of what is free
    after the prompt KV cache's budget; on a CPU the batch stops paying beyond a few thousand
    tokens, so 4096 unless memory is short."""
    text = getattr(config, "text_config", None) or config
    inter = getattr(text, "intermediate_size", 4 * text.hidden_size)
    kv = kv_bytes_per_token(config)
    per_token = 2 * 4 * kv + 8 * inter + 16 * text.hidden_size
    if device.startswith("cuda"):
        budget = int((free_bytes(device) - reserved_kv_tokens * kv) * 0.6)
    else:
        budget, cap = (free_bytes(device) - reserved_kv_tokens * kv) // 4, 4096
    return int(max(256, min(cap, budget // per_token)))


class Request(NamedTuple):
    """A prompt to score (r: its index in the call; None for a shared run computed for its
    KV only): its tokens, then each option's own tokens; its last `lead` tokens are the ones
    every option starts with, scored for each option."""

    r: int | None
    prefix: list[int]
    options: list[list[int]]
    lead: int

    @property
    def reusable(self) -> list[int]:
        """The part a cached run may cover: the lead tokens must be computed to be read."""
        return self.prefix[: len(self.prefix) - self.lead]


def option_width(options) -> int:
    """Tokens the options add to a tree-masked row: all but each option's last."""
    return sum(len(s) - 1 for s in options)


def length_batches(seqs, budget: int, size, overhead: int = 64):
    """Batches of rows sorted by `size` (tokens a row computes), each within `budget` padded
    tokens, cut where they cost least in padded tokens plus `overhead` per forward (its fixed
    cost, in tokens): rows of very different lengths do not pad each other."""
    sized = sorted(((size(s), k) for k, s in enumerate(seqs)))  # size once: it may be costly
    ordered = [seqs[k] for _, k in sized]
    sizes = [n for n, _ in sized]
    best = [0] + [None] * len(sizes)  # best[j]: cheapest cost of the first j rows
    cut = [0] * (len(sizes) + 1)
    for j in range(1, len(sizes) + 1):
        for i in range(j - 1, -1, -1):  # last batch = ordered[i:j], padded to sizes[j - 1]
            if i < j - 1 and (j - i) * sizes[j - 1] > budget:
                break
            cost = best[i] + (j - i) * sizes[j - 1] + overhead
            if best[j] is None or cost < best[j]:
                best[j], cut[j] = cost, i
    bounds, j = [], len(sizes)
    while j:
        bounds.append((cut[j], j))
        j = cut[j]
    for i, j in reversed(bounds):
        yield ordered[i:j]


def head_pieces(n: int, least: int) -> list[tuple[int, int]]:
    """[a, z) bounds cutting n rows into n // least pieces as equal as can be (one piece when
    n < 2 * least): every piece has `least` rows or more, so none takes a small-M kernel."""
    k = max(1, n // least)
    size, extra = divmod(n, k)
    bounds = [i * size + min(i, extra) for i in range(k + 1)]
    return list(itertools.pairwise(bounds))
