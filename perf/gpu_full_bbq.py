"""All of BBQ (58,492 items) under one condition through selfcorrect's engine and transformers
backend, on a randomly initialised model with Llama-2-7B's shape: items per second, tokens per
second, and model FLOP utilisation against this GPU's measured bf16 matrix-multiply peak.

Random weights measure throughput honestly without any download: the compute per token is the
real model's. Llama-2's own tokenizer cannot be fetched here, so the prompts are tokenized with
the packaged SmolLM2 tokenizer and the embedding has its 49,152 rows (6.87B parameters instead
of 6.74B; the transformer blocks, which hold 96% of the compute, are exactly Llama-2-7B's).

    python perf/gpu_full_bbq.py --tokenizer DIR [--limit N] [--deadline S] [--json OUT]
    python perf/gpu_full_bbq.py --tiny --limit 200     # the same path on a CPU, small

DIR holds a tokenizer with a chat template (default: the dequantised smollm2-135m-instruct
folder, made by any earlier selfcorrect run of that model)."""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import torch

LLAMA2_7B = dict(
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
    rms_norm_eps=1e-5,
)
TINY = dict(
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=4096,
)


def default_tokenizer() -> Path:
    from selfcorrect.backends.transformers.gguf_cache import dequantised_copy
    from selfcorrect.registry import resolve

    return dequantised_copy(resolve("smollm2-135m-instruct"), "bfloat16")


def matmul_peak_tflops(device: str, n: int = 8192, reps: int = 10) -> float:
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t) / 1e12


class GpuSampler(threading.Thread):
    """nvidia-smi's utilisation and memory once a second while the run lasts."""

    def __init__(self):
        super().__init__(daemon=True)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self):
        query = [
            "nvidia-smi",
            "--query-gpu=utilization.gpu,memory.used",
            "--format=csv,noheader,nounits",
        ]
        while not self.stop.wait(1.0):
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                util, mem = (float(x) for x in out.strip().splitlines()[0].split(","))
                self.samples.append((util, mem))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                return


def build_model(tok, tiny: bool, device: str):
    from transformers import LlamaConfig, LlamaForCausalLM

    shape = TINY if tiny else LLAMA2_7B
    config = LlamaConfig(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        attn_implementation="sdpa",
        **shape,
    )
    torch.manual_seed(0)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(old)
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tokenizer", type=Path)
    ap.add_argument("--tiny", action="store_true", help="a 4-layer model (checks the path on CPU)")
    ap.add_argument("--limit", type=int, default=0, help="first N items only (0: all)")
    ap.add_argument("--condition", default="baseline")
    ap.add_argument("--batch-items", type=int, default=256)
    ap.add_argument("--chunk", type=int, default=2048, help="items between deadline checks")
    ap.add_argument(
        "--deadline", type=float, default=0, help="stop after S seconds, project the rest"
    )
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.benchmarks.bbq import BBQ
    from selfcorrect.conditions import load_library
    from selfcorrect.engine import Job, execute
    from selfcorrect.metrics.bbq import summary
    from selfcorrect.store import Store

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tok = AutoTokenizer.from_pretrained(args.tokenizer or default_tokenizer())
    t0 = time.perf_counter()
    model = build_model(tok, args.tiny, device)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())
    n_embed = model.get_input_embeddings().weight.numel()
    backend = TransformersBackend.from_model(model, tok, "random-llama2-7b-shape", kind="chat")
    peak = matmul_peak_tflops(device) if device == "cuda" else float("nan")
    print(
        f"model {n_params / 1e9:.2f}B params built in {build_s:.1f}s on {device}; "
        f"batch_tokens {backend.batch_tokens}; bf16 matmul peak {peak:.0f} TFLOP/s",
        flush=True,
    )

    bbq = BBQ()
    items = bbq.items()
    if args.limit:
        items = items[: args.limit]
    lib = load_library()
    conds = lib.resolve([args.condition], "bbq")
    sampler = GpuSampler() if device == "cuda" else None
    with tempfile.TemporaryDirectory() as d:
        store = Store(d)
        run = store.register_run({}, "bbq", bbq.item_table(items), [], [])
        done = 0
        t = time.perf_counter()
        if sampler:
            sampler.start()
        for k in range(0, len(items), args.chunk):
            chunk = items[k : k + args.chunk]
            execute(store, run, "m", backend, Job("bbq", conds, chunk, 0, lib), args.batch_items)
            done += len(chunk)
            elapsed = time.perf_counter() - t
            print(
                f"{done}/{len(items)} items, {elapsed:.0f}s, {done / elapsed:.1f} items/s, "
                f"{backend.forward_tokens / elapsed:,.0f} tok/s",
                flush=True,
            )
            if args.deadline and elapsed > args.deadline and done < len(items):
                print("deadline reached: the rest is projected", flush=True)
                break
        if device == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t
        if sampler:
            sampler.stop.set()
        outcomes = store.outcomes()
        store.close()
    overall = summary(outcomes, n_boot=0)
    overall = overall[overall.group == "overall"][["context", "n", "accuracy", "bias"]]
    # 2 FLOPs per weight per token through the blocks; the vocabulary head runs only at the
    # few positions read, the embedding is a lookup
    flops = 2 * (n_params - 2 * n_embed) * backend.forward_tokens
    util = [u for u, _ in sampler.samples] if sampler else []
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "transformers": __import__("transformers").__version__,
        "params": n_params,
        "shape": "tiny" if args.tiny else "llama-2-7b",
        "condition": args.condition,
        "items_total": len(items),
        "items_done": done,
        "seconds": round(seconds, 1),
        "items_per_s": round(done / seconds, 2),
        "projected_all_s": round(len(items) * seconds / done, 1),
        "forward_tokens": backend.forward_tokens,
        "tokens_per_s": round(backend.forward_tokens / seconds),
        "prompt_kv_hits": backend._kv.hits,
        "batch_tokens": backend.batch_tokens,
        "batch_items": args.batch_items,
        "achieved_tflops": round(flops / seconds / 1e12, 1),
        "matmul_peak_tflops": round(peak, 1),
        "mfu_vs_measured_peak": round(flops / seconds / 1e12 / peak, 3) if peak == peak else None,
        "gpu_util_mean_pct": round(sum(util) / len(util), 1) if util else None,
        "gpu_mem_used_max_mib": max((m for _, m in sampler.samples), default=None)
        if sampler
        else None,
        "torch_peak_alloc_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)
        if device == "cuda"
        else None,
        "model_build_s": round(build_s, 1),
        "unparseable": int(outcomes["pred"].isna().sum()),
        "scores": overall.to_dict("records"),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
