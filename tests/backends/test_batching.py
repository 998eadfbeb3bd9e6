"""Memory sizing of the transformers backend, on a constructed config (no model)."""

from types import SimpleNamespace

from selfcorrect.backends.transformers import batching

# Qwen2.5-Coder-1.5B's attention shape: 28 layers x 2 KV heads x 128 dims, bf16
CONFIG = SimpleNamespace(num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         hidden_size=1536, head_dim=128)  # fmt: skip


def test_kv_bytes_per_token():
    assert batching.kv_bytes_per_token(CONFIG) == 2 * 28 * 2 * 128 * 2  # 28,672


def test_free_bytes_reads_available_memory():
    assert batching.free_bytes("cpu") > 0
