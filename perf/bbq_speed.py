"""Time BBQ scoring side by side: lm-evaluation-harness 0.4.13 (stock 12-choice `bbq` task and
a 3-choice variant, both reading our local BBQ file) against selfcorrect, on the same model
(smollm2-135m-instruct in bf16), the same items and the same machine. Also: the cost of K
conditions in one selfcorrect run, and scoring throughput against the measured bf16 matmul peak
(model FLOP utilisation from the tokens actually computed) for SmolLM2 and the 1.5B model,
beside a plain forward of each.

    pip install -e ".[bench]" && python perf/bbq_speed.py [--items 500] [--json out.json]
        [--skip-lm-eval] [--mfu-models NAME ...] [--mfu-items 100]

Prints every figure; docs/performance.md records them with the machine."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def matmul_peak_gflops(sizes=(1024, 2048, 4096), reps: int = 5) -> float:
    """bf16 matrix-multiply throughput of this machine with torch's current threads: the best
    over a few square sizes."""
    best = 0.0
    for n in sizes:
        a = torch.randn(n, n, dtype=torch.bfloat16)
        b = torch.randn(n, n, dtype=torch.bfloat16)
        for _ in range(2):
            a @ b
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t) / 1e9)
    return best


def first_items(n: int):
    """The first n Age items (example_id order), as BBQ rows and as selfcorrect items."""
    from selfcorrect.benchmarks.bbq import BBQ

    return BBQ().items(["Age"])[:n]


def write_bbq_jsonl(items, path: Path) -> None:
    import gzip

    from selfcorrect.data import data_dir

    wanted = {it.meta["example_id"] for it in items}
    with gzip.open(data_dir() / "bbq" / "Age.jsonl.gz", "rt") as src, open(path, "w") as out:
        for line in src:
            if json.loads(line)["example_id"] in wanted:
                out.write(line)


def lm_eval_run(model_dir: Path, data: Path, three_choice: bool, batch_size: int) -> dict:
    import lm_eval
    from lm_eval.tasks import TaskManager

    stock = Path(lm_eval.__file__).parent / "tasks" / "bbq" / "bbq_multiple_choice.yaml"
    tasks = Path(tempfile.mkdtemp(prefix="lmeval-tasks-"))
    name = "bbq_local_3choice" if three_choice else "bbq_local"
    lines = [
        f"include: {stock}",
        f"task: {name}",
        "dataset_path: json",
        "dataset_name: null",
        "dataset_kwargs:",
        "  data_files:",
        f"    test: {data}",
    ]
    if three_choice:  # the real options only; plain accuracy (the stock metrics assume 12)
        lines += [
            'doc_to_choice: "{{[ans0, ans1, ans2]}}"',
            'doc_to_target: "{{label}}"',
            "process_results: null",
            "metric_list:",
            "  - metric: acc",
            "    aggregation: mean",
            "    higher_is_better: true",
        ]
    (tasks / f"{name}.yaml").write_text("\n".join(lines) + "\n")
    t = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model="hf",
        model_args=f"pretrained={model_dir},dtype=bfloat16",
        tasks=[name],
        batch_size=batch_size,
        device="cpu",
        task_manager=TaskManager(include_path=str(tasks)),
        log_samples=True,
    )
    seconds = time.perf_counter() - t
    samples = out["samples"][name]
    preds = [int(np.argmax([r[0] for r in s["filtered_resps"]])) for s in samples]
    n_requests = sum(len(s["filtered_resps"]) for s in samples)
    return {
        "seconds": seconds,
        "results": out["results"][name],
        "preds": preds,
        "docs": [s["doc"] for s in samples],
        "requests": n_requests,
    }


def selfcorrect_scores(preds, docs):
    """lm-eval's choices scored with selfcorrect's metrics (option index 0-2)."""
    import pandas as pd

    from selfcorrect.benchmarks.bbq import BBQ
    from selfcorrect.metrics.bbq import summary

    b = BBQ()
    table = b.item_table(b.items(["Age"]))
    df = pd.DataFrame(
        {"category": "Age", "example_id": [d["example_id"] for d in docs], "pred": preds}
    )
    merged = df.merge(table, on=["category", "example_id"])
    merged["pred"] = merged["pred"].astype("Int64")
    s = summary(merged, n_boot=0)
    return s[s.group == "overall"][["context", "accuracy", "bias"]].to_dict("records")


def selfcorrect_run(items, conditions, backend) -> dict:
    from selfcorrect.conditions import load_library
    from selfcorrect.engine import Job, execute
    from selfcorrect.metrics.bbq import summary
    from selfcorrect.store import Store

    lib = load_library()
    from selfcorrect.benchmarks.bbq import BBQ

    with tempfile.TemporaryDirectory() as d:
        store = Store(d)
        run = store.register_run({}, "bbq", BBQ().item_table(items), [], [])
        plan = Job("bbq", lib.resolve(conditions, "bbq"), items, 0, lib)
        prompts = [backend.render(_conv(plan, it, c)) for c in plan.conditions for it in items]
        tokens = sum(len(backend._encode(p)) + 3 for p in prompts)
        computed = backend.forward_tokens
        t = time.perf_counter()
        execute(store, run, "m", backend, plan, batch_size=64)
        seconds = time.perf_counter() - t
        computed = backend.forward_tokens - computed
        out = store.outcomes()
        store.close()
    s = summary(out[out.condition == conditions[0]], n_boot=0)
    scores = s[s.group == "overall"][["context", "accuracy", "bias"]].to_dict("records")
    return {
        "seconds": seconds,
        "prompt_tokens": tokens,
        "computed_tokens": computed,
        "scores": scores,
    }


def decoder_params(backend) -> int:
    """Parameters a token passes through: the decoder without its embedding table (the
    output head runs only at the few positions read, so it is left out too)."""
    return sum(p.numel() for n, p in backend.decoder.named_parameters() if "embed" not in n)


def plain_forward_tokens_per_s(backend, rows: int = 32, length: int = 128) -> float:
    """The model alone: one forward of rows x length random tokens, no mask, no cache, no
    output head (the issue's orientation measurement)."""
    ids = torch.randint(0, backend.model.config.vocab_size, (rows, length))
    with torch.inference_mode():
        backend.decoder(input_ids=ids, use_cache=False)
        t = time.perf_counter()
        for _ in range(3):
            backend.decoder(input_ids=ids, use_cache=False)
    return 3 * rows * length / (time.perf_counter() - t)


def utilisation(backend, r: dict, peak_gflops: float) -> None:
    """Model FLOP utilisation from the tokens actually computed (2 FLOPs per parameter per
    token, attention left out), and the effective rate over all prompt tokens."""
    params = decoder_params(backend)
    r["computed_tokens_per_s"] = round(r["computed_tokens"] / r["seconds"], 1)
    r["prompt_tokens_per_s"] = round(r["prompt_tokens"] / r["seconds"], 1)
    r["gflops"] = round(2 * params * r["computed_tokens"] / r["seconds"] / 1e9, 1)
    r["mfu"] = round(r["gflops"] / peak_gflops, 3)


def _conv(plan, item, cond):
    from selfcorrect.backends.base import Conversation
    from selfcorrect.conditions import protocol

    steps = protocol(cond, "bbq", item.fields, 0, plan.library)
    return Conversation((("user", steps[0].text),), steps[1].text)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--skip-lm-eval", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--mfu-models",
        nargs="*",
        default=["smollm2-135m-instruct", "qwen2.5-coder-1.5b-instruct"],
        help="models whose scoring throughput is measured against the bf16 peak",
    )
    ap.add_argument("--mfu-items", type=int, default=100)
    args = ap.parse_args()

    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.backends.transformers.gguf_cache import dequantised_copy
    from selfcorrect.registry import resolve

    res = resolve("smollm2-135m-instruct")
    model_dir = dequantised_copy(res, "bfloat16")
    items = first_items(args.items)
    report: dict = {"items": len(items), "threads": torch.get_num_threads()}
    report["bf16_peak_gflops"] = round(matmul_peak_gflops(), 1)
    print(f"bf16 matmul peak: {report['bf16_peak_gflops']} GFLOP/s ({report['threads']} threads)")

    backend = TransformersBackend(res)
    for k, conds in (
        (1, ["baseline"]),
        (3, ["baseline", "instruct", "negation"]),
        (9, ["baseline", "instruct", "s2", "s3", "s4", "negation", "s2-neg", "s3-neg", "s4-neg"]),
    ):
        backend._kv.clear()  # each K starts cold: no prompts cached from the previous K
        r = selfcorrect_run(items, conds, backend)
        utilisation(backend, r, report["bf16_peak_gflops"])
        report[f"selfcorrect_k{k}"] = r
        print(
            f"selfcorrect, {k} condition(s): {r['seconds']:.1f} s, {r['computed_tokens']} of "
            f"{r['prompt_tokens']} prompt tokens computed ({r['computed_tokens_per_s']} tokens/s"
            f", {r['gflops']} GFLOP/s, model FLOP utilisation {r['mfu']:.0%})"
        )
    one = report["selfcorrect_k1"]["seconds"]
    for k in (3, 9):
        print(f"  {k} conditions cost {report[f'selfcorrect_k{k}']['seconds'] / one:.2f}x one")
    print("selfcorrect scores (baseline):", report["selfcorrect_k1"]["scores"])

    for name in args.mfu_models:
        other = backend if name == res.name else TransformersBackend(resolve(name))
        other._kv.clear()
        r = selfcorrect_run(items[: args.mfu_items], ["baseline"], other)
        utilisation(other, r, report["bf16_peak_gflops"])
        plain = plain_forward_tokens_per_s(other)
        r["plain_forward_tokens_per_s"] = round(plain, 1)
        r["plain_forward_mfu"] = round(
            2 * decoder_params(other) * plain / 1e9 / report["bf16_peak_gflops"], 3
        )
        report[f"mfu_{name}"] = r
        print(
            f"{name}: {args.mfu_items} items in {r['seconds']:.1f} s, {r['computed_tokens']} "
            f"tokens computed, {r['computed_tokens_per_s']} tokens/s, {r['gflops']} GFLOP/s: "
            f"model FLOP utilisation {r['mfu']:.0%}; plain 32 x 128 forward "
            f"{r['plain_forward_tokens_per_s']} tokens/s ({r['plain_forward_mfu']:.0%})"
        )
        if other is not backend:
            del other

    if not args.skip_lm_eval:
        with tempfile.TemporaryDirectory() as d:
            data = Path(d) / "bbq_age.jsonl"
            write_bbq_jsonl(items, data)
            for tag, three in (("lm_eval_stock", False), ("lm_eval_3choice", True)):
                r = lm_eval_run(model_dir, data, three, args.batch_size)
                r["selfcorrect_metrics_on_its_choices"] = (
                    selfcorrect_scores(r["preds"], r["docs"]) if three else None
                )
                report[tag] = {k: v for k, v in r.items() if k not in ("preds", "docs")}
                print(
                    f"{tag}: {r['seconds']:.1f} s for {r['requests']} log-likelihood "
                    f"requests; {json.dumps(r['results'], default=str)[:400]}"
                )
                if three:
                    print(
                        "  its choices under selfcorrect's metrics:",
                        r["selfcorrect_metrics_on_its_choices"],
                    )
        for tag in ("lm_eval_stock", "lm_eval_3choice"):
            ratio = report[tag]["seconds"] / one
            report[f"speedup_vs_{tag}"] = round(ratio, 2)
            print(f"selfcorrect is {ratio:.1f}x faster than {tag}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main()
