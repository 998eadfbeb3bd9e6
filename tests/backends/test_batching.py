"""Memory sizing of the transformers backend, on a constructed config (no model)."""

import itertools
from types import SimpleNamespace

from selfcorrect.backends.transformers import batching

# Qwen2.5-Coder-1.5B's attention shape: 28 layers x 2 KV heads x 128 dims, bf16
CONFIG = SimpleNamespace(num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         hidden_size=1536, head_dim=128)  # fmt: skip


def test_kv_bytes_per_token():
    assert batching.kv_bytes_per_token(CONFIG) == 2 * 28 * 2 * 128 * 2  # 28,672


def test_free_bytes_reads_available_memory():
    assert batching.free_bytes("cpu") > 0


def test_head_pieces_cover_the_rows_in_order_none_below_the_least():
    assert batching.head_pieces(0, 512) == [(0, 0)]
    assert batching.head_pieces(1023, 512) == [(0, 1023)]  # under two pieces' worth: one
    assert batching.head_pieces(1024, 512) == [(0, 512), (512, 1024)]
    for n in (1, 511, 512, 1500, 4096, 5000):
        pieces = batching.head_pieces(n, 512)
        assert pieces[0][0] == 0 and pieces[-1][1] == n
        assert all(z == a for (_, z), (a, _) in itertools.pairwise(pieces))  # contiguous
        sizes = [z - a for a, z in pieces]
        assert len(pieces) == max(1, n // 512) and max(sizes) - min(sizes) <= 1
        assert n < 512 or min(sizes) >= 512
