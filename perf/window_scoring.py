"""Sliding-window scoring: Gemma 3's rows longer than its window, scored in one tree-masked pass
(a mask per layer type, the sliding layers' cut to the window) against the way before it (one
sequence per option, the whole row again for every option). The prompts are BBQ questions after
a long conversation (earlier items' questions as the user's turns), from under the 512-token
window to about twice it, each with its three answer options; prints the wall time of each way,
and on the rows the way before sent one sequence per option (those over the window): how far
the two ways' log-probabilities and hidden states (layers 14 and the last) are apart
(float32: rounding only; bfloat16, the study's dtype: how far its arithmetic moves them).

    python perf/window_scoring.py [--model gemma-3-270m] [--items 96] [--dtype bfloat16]
        [--json out.json]"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from compare import emit, load_backend  # perf/, beside this script


def long_prompts(backend, n: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """Item i is asked after i % 8 earlier items' contexts: rows of every length band."""
    from selfcorrect.backends.base import Conversation
    from selfcorrect.benchmarks.bbq import BBQ

    b = BBQ()
    items = b.sample(b.items(), n + 8, seed)
    prompts, cands = [], []
    for i, it in enumerate(items[8:]):
        earlier = [("user", e.fields["question_text"]) for e in items[: 1 + i % 8]]
        turns = [t for u in earlier for t in (u, ("assistant", "I don't know."))]
        conv = Conversation((*turns, ("user", it.fields["question_text"])), "The answer is")
        prompts.append(backend.render(conv))
        cands.append(list(it.continuations("cloze")))
    return prompts, cands


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--items", type=int, default=96)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from selfcorrect.hidden import parse_layers

    backend = load_backend(args.model, args.dtype)
    assert backend._mask_per_type, f"{args.model} has no mask per layer type"
    prompts, cands = long_prompts(backend, args.items)
    lengths = [len(backend._encode(p)) for p in prompts]
    backend.score(prompts[:4], cands[:4])  # warm-up
    routed: list[str] = []  # the prompts the way before sent one sequence per option
    per_option = backend.score_per_option
    backend.score_per_option = lambda p, c: routed.extend(p) or per_option(p, c)
    walls, got = {}, {}
    for way, per_type in (("tree", True), ("per-option", False)):
        backend._mask_per_type = per_type
        t = time.perf_counter()
        got[way] = backend.score(prompts, cands)
        walls[way] = round(time.perf_counter() - t, 2)
    moved = [i for i, p in enumerate(prompts) if p in set(routed)]  # scored two ways
    pairs = [(got["tree"][i], got["per-option"][i]) for i in moved]
    diffs = np.array([np.abs(np.subtract(a.logprobs, b.logprobs)).max() for a, b in pairs])
    agree = sum(int(np.argmax(a.logprobs) == np.argmax(b.logprobs)) for a, b in pairs)
    # the residual stream at the answer position (the study's layers) on the moved rows
    backend.capture_layers = parse_layers("14,-1", backend.n_hidden_states)
    states = {}
    for way, per_type in (("tree", True), ("per-option", False)):
        backend._mask_per_type = per_type
        res = backend.score([prompts[i] for i in moved], [cands[i] for i in moved])
        states[way] = np.stack([r.hidden for r in res])
    rel = np.linalg.norm(states["tree"] - states["per-option"], axis=-1) / np.linalg.norm(
        states["per-option"], axis=-1
    )
    result = {
        "model": args.model, "dtype": args.dtype, "rows": len(prompts),
        "window": backend._window, "rows_over_window_way_before": len(moved),
        "prompt_tokens_min_median_max": [min(lengths), int(np.median(lengths)), max(lengths)],
        "wall_s": walls, "speedup": round(walls["per-option"] / walls["tree"], 2),
        "rows_over_window": {
            "answers_agree": agree,
            "max_abs_dlogprob_median": float(np.median(diffs)),
            "max_abs_dlogprob_max": float(diffs.max()),
            "hidden_layers": backend.capture_layers,
            "hidden_relative_diff_median": float(np.median(rel)),
            "hidden_relative_diff_max": float(rel.max()),
        },
        "threads": backend.info["threads"],
    }  # fmt: skip
    emit(result, args.json)


if __name__ == "__main__":
    main()
