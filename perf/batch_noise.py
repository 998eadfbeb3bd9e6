"""Items per batch: speed, and how much bf16 arithmetic alone moves the answers. The same BBQ
items under the same conditions are scored twice into fresh stores, at two batch sizes (the
engine asks a batch under every condition before the next, so the batch size decides which
prompts share the prompt KV cache and which shapes the forwards have); prints the wall time of
each, the share of answers that agree and the spread of their log-probabilities.

    python perf/batch_noise.py [--model smollm2-135m-instruct] [--items 512]
        [--conditions baseline,instruct,s2,s3] [--batches 512,128] [--json out.json]"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from compare import agreement, answers, emit  # perf/, beside this script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--items", type=int, default=512)
    ap.add_argument("--conditions", default="baseline,instruct,s2,s3")
    ap.add_argument("--batches", default="512,128")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from selfcorrect import api

    runs, frames = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for bs in (int(b) for b in args.batches.split(",")):
            out = Path(tmp) / f"b{bs}"
            t = time.perf_counter()
            api.run(args.model, conditions=args.conditions, limit=args.items, readout="cloze",
                    permute="none", batch_size=bs, out=out, progress=False,
                    write_report=False)  # fmt: skip
            runs[bs] = round(time.perf_counter() - t, 1)
            frames[bs] = answers(out, "condition, uid, pred, logprobs").set_index(
                ["condition", "uid"]
            )
    (a, fa), (b, fb) = list(frames.items())[:2]
    result = {
        "model": args.model,
        "items": args.items,
        "conditions": args.conditions,
        "wall_s": runs,
        **agreement(fa, fb),
        "batches": [a, b],
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
