"""The transformers backend: `backend` (the engine calls), `prompt_kv` (the prompt KV cache),
`batching` (memory sizing and padding-aware batches), `gguf_cache` (dequantised weights)."""
