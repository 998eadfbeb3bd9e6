"""The cost of each self-correction round: the same items run with rounds 0, 1, ..., R into one
store, so every run computes only its new round (resume). A round continues the cached
conversation, so its cost should be about its own new tokens (the answer, the feedback turn,
the prefill), not the whole conversation. Prints seconds, tokens computed and the prompt's
length per round.

    python perf/rounds_cost.py [--model smollm2-135m-instruct] [--items 64] [--rounds 10]
        [--json out.json]"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--items", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.benchmarks.bbq import BBQ
    from selfcorrect.conditions import load_library
    from selfcorrect.engine import Job, execute
    from selfcorrect.registry import resolve
    from selfcorrect.store import Store

    backend = TransformersBackend(resolve(args.model))
    b, lib = BBQ(), load_library()
    items = b.sample(b.items(), args.items, 0)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        store = Store(d)
        run = store.register_run({}, "bbq", b.item_table(items), [], [])
        for r in range(args.rounds + 1):
            job = Job("bbq", lib.resolve(["baseline"], "bbq"), items, r, lib)
            tokens = backend.forward_tokens
            t = time.perf_counter()
            execute(store, run, "m", backend, job, batch_size=64)
            sec = time.perf_counter() - t
            prompts = store.conn.execute(
                "SELECT AVG(LENGTH(prompt)) FROM answers WHERE round=?", (r,)
            ).fetchone()[0]
            rows.append({"round": r, "seconds": round(sec, 2),
                         "computed_tokens": backend.forward_tokens - tokens,
                         "mean_prompt_chars": round(prompts or 0)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        store.close()
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "items": args.items,
                                         "rounds": rows}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
