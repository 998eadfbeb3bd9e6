"""The transformers backend: `backend` (the engine calls), `prompt_kv` (the prompt KV cache),
`batching` (memory sizing and padding-aware batches), `decode` (the decode loop), `head` (the
output head in fp32), `gguf_cache` (dequantised weights)."""
