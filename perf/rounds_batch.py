"""Items per stored batch in the feedback-rounds part: does the prompt KV cache find each
conversation again? A batch's conversations advance one round at a time together (baseline and
S1, letter and cloze readouts: four conversations per item, plus the exact-transition
branches); if a round's conversations outgrew the cache's token budget, least-recently-used
eviction would drop each conversation just before its next round needs it and every round would
recompute the whole conversation. The same items run the study's rounds part (6 rounds, exact
transitions, hidden states at 14 and the last layer) into fresh stores at two batch sizes;
prints the wall time, the tokens the model computed, the cache's hits, and how many answers
agree (on SmolLM2, 48 items: the same tokens at 48 and 8 per batch, docs/performance.md).

    python perf/rounds_batch.py [--model smollm2-135m-instruct] [--items 48] [--batches 48,8]
        [--json out.json]"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from compare import agreement, answers, emit  # perf/, beside this script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--batches", default="48,8")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from selfcorrect import api
    from selfcorrect.backends.transformers.backend import TransformersBackend

    made = []  # every backend the runs load, to read its counters afterwards
    setup = TransformersBackend._setup

    def keep(self, *a, **k):
        setup(self, *a, **k)
        made.append(self)

    TransformersBackend._setup = keep
    runs, frames = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for bs in (int(b) for b in args.batches.split(",")):
            out = Path(tmp) / f"b{bs}"
            t = time.perf_counter()
            api.run(args.model, conditions="baseline,instruct", limit=args.items, rounds=6,
                    readout="logprob,cloze", permute="none", exact_transitions=True,
                    save_hidden="14,-1", batch_size=bs, out=out, progress=False,
                    write_report=False)  # fmt: skip
            backend = made[-1]
            runs[bs] = {"wall_s": round(time.perf_counter() - t, 1),
                        "forward_tokens": backend.forward_tokens,
                        "kv_hits": backend._kv.hits,
                        "kv_budget_tokens": backend._kv.budget}  # fmt: skip
            keys = ["condition", "uid", "round", "readout"]
            frames[bs] = answers(out, "condition, uid, round, readout, pred, logprobs").set_index(
                keys
            )
    (a, fa), (b, fb) = list(frames.items())[:2]
    result = {
        "model": args.model,
        "items": args.items,
        "runs": runs,
        **agreement(fa, fb),
        "batches": [a, b],
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
