"""Memory sizing of the transformers backend, on a constructed config (no model)."""

from types import SimpleNamespace

from selfcorrect.backends.transformers import batching

# Qwen2.5-Coder-1.5B's attention shape: 28 layers x 2 KV heads x 128 dims, bf16
CONFIG = SimpleNamespace(num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                         hidden_size=1536, head_dim=128)  # fmt: skip


def test_kv_bytes_per_token():
    assert batching.kv_bytes_per_token(CONFIG) == 2 * 28 * 2 * 128 * 2  # 28,672


def test_prompt_kv_cache_takes_a_quarter_of_free_memory_on_a_cpu(monkeypatch):
    monkeypatch.setattr(batching, "free_bytes", lambda device: 20 << 30)
    assert batching.prompt_kv_tokens(CONFIG, "cpu") == (20 << 30) // 4 // 28672  # 187,245
    monkeypatch.setattr(batching, "free_bytes", lambda device: 1 << 30)  # never below the floor
    assert batching.prompt_kv_tokens(CONFIG, "cpu") == batching.PROMPT_KV_TOKENS
    monkeypatch.setattr(batching, "free_bytes", lambda device: 80 << 30)
    assert batching.prompt_kv_tokens(CONFIG, "cuda:0") == batching.PROMPT_KV_TOKENS


def test_free_bytes_reads_available_memory():
    assert batching.free_bytes("cpu") > 0
