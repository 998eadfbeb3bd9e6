"""Gemma 3's prompt KV cache on feedback rounds: the same rounds run (each round's prompt is the
conversation so far, so with the cache it computes only the new turn) into two fresh stores,
with the prompt KV cache and with it off (budget 0, as before 2026-12-06 for sliding-window
models); prints the wall time of each, the share of answers that agree and the spread of their
log-probabilities, and of the hidden states kept at layers 14 and the last.

    python perf/window_rounds.py [--model gemma-3-270m] [--items 22] [--rounds 6]
        [--dtype bfloat16] [--json out.json]"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from compare import answers, emit, logprob_spread  # perf/, beside this script


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--items", type=int, default=22)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from selfcorrect import api
    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.backends.transformers.prompt_kv import PromptKV
    from selfcorrect.hidden import load_hidden

    init = TransformersBackend.__init__
    walls, frames, states = {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for way in ("cache", "no-cache"):

            def patched(self, *a, _way=way, **k):
                init(self, *a, **k)
                if _way == "no-cache":
                    self._kv = PromptKV(self.torch, 0)

            TransformersBackend.__init__ = patched
            out = Path(tmp) / way
            t = time.perf_counter()
            api.run(args.model, conditions="baseline,instruct", limit=args.items,
                    rounds=args.rounds, readout="logprob,cloze", permute="none",
                    save_hidden="14,-1", dtype=args.dtype, out=out, progress=False,
                    write_report=False)  # fmt: skip
            walls[way] = round(time.perf_counter() - t, 1)
            frames[way] = answers(out, "condition, readout, uid, round, pred, logprobs").set_index(
                ["condition", "readout", "uid", "round"]
            )
            keys, h, _ = load_hidden(out)
            keys = keys.set_index(["condition", "readout", "uid", "round"]).index
            states[way] = pd.Series(list(h), index=keys).sort_index()
        TransformersBackend.__init__ = init
    both = frames["cache"].merge(
        frames["no-cache"], left_index=True, right_index=True, suffixes=("_a", "_b")
    )
    diffs = logprob_spread(both["logprobs_a"], both["logprobs_b"])
    a, b = states["cache"], states["no-cache"].reindex(states["cache"].index)
    # per state: the larger of its layers' |difference| / |state|
    rel = np.array([(np.linalg.norm(x - y, axis=-1) / np.linalg.norm(y, axis=-1)).max()
                    for x, y in zip(a, b, strict=True)])  # fmt: skip
    result = {
        "model": args.model, "items": args.items, "rounds": args.rounds, "dtype": args.dtype,
        "wall_s": walls, "speedup": round(walls["no-cache"] / walls["cache"], 2),
        "answers": len(both), "agree": int((both["pred_a"] == both["pred_b"]).sum()),
        "max_abs_dlogprob_median": float(np.median(diffs)),
        "max_abs_dlogprob_max": float(diffs.max()),
        "hidden_states": len(a),
        "hidden_relative_diff_median": float(np.median(rel)),
        "hidden_relative_diff_max": float(rel.max()),
    }  # fmt: skip
    emit(result, args.json)


if __name__ == "__main__":
    main()
