"""Does a bf16 model decode faster here when its linear layers compute in fp32?

On a CPU whose bf16 matmul is slower than its fp32 one (the 2-core Xeon without AMX of
docs/performance.md: 147 against 228 GFLOP/s), a bf16 linear layer can be computed as an fp32
one on the same values: the product of two bf16 numbers is exact in fp32, oneDNN's bf16 kernel
accumulates in fp32 too, and the result is rounded back to bf16 either way. Only the order of
the sums differs, as between two CPUs' kernels. This script times greedy decode steps of a
packaged model both ways (same prompts, batch and KV cache) and says how far the logits of
the two ways differ, against how far bf16 is from fp32 at all.

    python perf/linear_fp32.py --model qwen2.5-coder-1.5b-instruct --batch 64 --steps 8 \
        --json perf/results-DATE-cpu2-linear-fp32.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from selfcorrect.backends.transformers.gguf_cache import dequantised_copy
from selfcorrect.registry import resolve


def fp32_linears(model) -> int:
    """Every nn.Linear computes in fp32 on an fp32 copy of its (bf16-valued) weights and
    rounds its output back to the input's dtype."""
    n = 0
    for mod in model.modules():
        if isinstance(mod, torch.nn.Linear):
            w = mod.weight.detach().float()
            b = None if mod.bias is None else mod.bias.detach().float()

            def forward(x, w=w, b=b):
                return F.linear(x.float(), w, b).to(x.dtype)

            mod.forward = forward
            n += 1
    return n


def decode(model, ids, steps: int) -> tuple[float, torch.Tensor, list[float]]:
    """Prefill, then `steps` greedy steps with the KV cache: (prefill s, first logits, step s)."""
    with torch.inference_mode():
        t = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        prefill = time.perf_counter() - t
        first = out.logits[:, -1].float()
        past, nxt, times = out.past_key_values, first.argmax(-1, keepdim=True), []
        for _ in range(steps):
            t = time.perf_counter()
            out = model(input_ids=nxt, past_key_values=past, use_cache=True)
            times.append(time.perf_counter() - t)
            past, nxt = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
    return prefill, first, times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    folder = dequantised_copy(resolve(args.model), "bfloat16")
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(100, 20000, (args.batch, args.prompt_tokens), generator=gen)
    rows, logits = {}, {}
    for way in ("bf16", "bf16, fp32 linears", "fp32"):
        dtype = torch.float32 if way == "fp32" else torch.bfloat16
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        patched = fp32_linears(model) if "fp32 linears" in way else 0
        prefill, first, times = decode(model, ids, args.steps)
        steady = sorted(times[1:])[len(times[1:]) // 2] if len(times) > 1 else times[0]
        rows[way] = {"prefill_s": round(prefill, 2), "step_s_median": round(steady, 3),
                     "linears_patched": patched}  # fmt: skip
        logits[way] = first
        print(way, rows[way], flush=True)
        del model
    ref = logits["fp32"]
    for way in ("bf16", "bf16, fp32 linears"):
        rows[way]["max_abs_logit_diff_vs_fp32"] = round((logits[way] - ref).abs().max().item(), 4)
        rows[way]["argmax_agrees_with_fp32"] = float(
            (logits[way].argmax(-1) == ref.argmax(-1)).float().mean()
        )
    rows["bf16, fp32 linears"]["max_abs_logit_diff_vs_bf16"] = round(
        (logits["bf16, fp32 linears"] - logits["bf16"]).abs().max().item(), 4
    )
    rows["bf16, fp32 linears"]["argmax_agrees_with_bf16"] = float(
        (logits["bf16, fp32 linears"].argmax(-1) == logits["bf16"].argmax(-1)).float().mean()
    )
    speed = rows["bf16"]["step_s_median"] / rows["bf16, fp32 linears"]["step_s_median"]
    result = {"args": vars(args), "torch": torch.__version__, "ways": rows,
              "step_speedup_fp32_linears": round(speed, 2)}  # fmt: skip
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


if __name__ == "__main__":
    main()
