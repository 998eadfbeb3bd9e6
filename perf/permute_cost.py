"""The cost of asking every BBQ item under its 3 cyclic option orders instead of once: the
same items, model and machine, fresh stores, interleaved repeats; seconds and tokens computed.

    python perf/permute_cost.py [--model smollm2-135m-instruct] [--items 264] [--repeats 2]
        [--json out.json]"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def one_run(backend, items, permute: str) -> dict:
    from selfcorrect.benchmarks.bbq import BBQ
    from selfcorrect.conditions import load_library
    from selfcorrect.engine import Job, execute
    from selfcorrect.store import Store

    b, lib = BBQ(), load_library()
    asked = b.variants(items, permute)
    backend._kv.clear()
    with tempfile.TemporaryDirectory() as d:
        store = Store(d)
        run = store.register_run({}, "bbq", b.item_table(asked), [], [])
        job = Job("bbq", lib.resolve(["baseline"], "bbq"), asked, 0, lib)
        tokens = backend.forward_tokens
        t = time.perf_counter()
        execute(store, run, "m", backend, job, batch_size=64)
        seconds = time.perf_counter() - t
        store.close()
    return {"seconds": round(seconds, 2), "computed_tokens": backend.forward_tokens - tokens,
            "asked": len(asked)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--items", type=int, default=264)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.benchmarks.bbq import BBQ
    from selfcorrect.registry import resolve

    backend = TransformersBackend(resolve(args.model))
    b = BBQ()
    items = b.sample(b.items(), args.items, 0)
    one_run(backend, items[:16], "none")  # warm up
    runs = {"none": [], "cyclic": []}
    for _ in range(args.repeats):
        for permute in ("none", "cyclic"):
            r = one_run(backend, items, permute)
            runs[permute].append(r)
            print(permute, json.dumps(r), flush=True)
    med = {k: sorted(x["seconds"] for x in v)[len(v) // 2] for k, v in runs.items()}
    out = {"model": args.model, "items": args.items, "runs": runs, "median_s": med,
           "ratio_seconds": round(med["cyclic"] / med["none"], 2),
           "ratio_tokens": round(runs["cyclic"][0]["computed_tokens"]
                                 / runs["none"][0]["computed_tokens"], 2)}  # fmt: skip
    print(json.dumps({k: out[k] for k in ("median_s", "ratio_seconds", "ratio_tokens")}))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
