"""The scoring head in pieces: a batch's summed option log-probabilities computed the way before
(one GEMM and one full-vocabulary log-softmax over every position read) and the way now
(`_summed_logprobs`: pieces of HEAD_ROWS rows or more), on real hidden states (the last layer
at the tokens of BBQ prompts). Prints whether the two are bit for bit the same, the wall time of
each, and each way's peak resident memory above what the process held before it (the run's
peak count of selfcorrect.manifest, reset before each way).

    python perf/head_pieces.py [--model gemma-3-270m] [--rows 4096] [--dtype bfloat16]
        [--json out.json]"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from compare import emit, load_backend  # perf/, beside this script


def peak_above_start(fn):
    """fn()'s result, its wall time, and the peak resident memory (MiB) it added."""
    from selfcorrect.manifest import peak_rss_mb, reset_peak_rss

    scope = reset_peak_rss()
    assert scope == "run", "this platform cannot reset a process's peak memory count"
    start = peak_rss_mb(scope)  # right after the reset, the peak is the resident size
    t = time.perf_counter()
    out = fn()
    return out, round(time.perf_counter() - t, 2), round(peak_rss_mb(scope) - start)


def whole(backend, hidden, at, targets, owner, n_rows):
    """The way before: every position's logits and log-softmax at once."""
    import torch

    logits = backend.head(hidden).float()
    if backend.softcap:
        logits = torch.tanh(logits / backend.softcap) * backend.softcap
    lp = torch.log_softmax(logits, dim=-1)
    tok_lp = lp[torch.tensor(at), torch.tensor(targets)]
    sums = torch.zeros(n_rows, dtype=torch.float64)
    sums.index_add_(0, torch.tensor(owner), tok_lp.double())
    return sums.tolist()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--rows", type=int, default=4096)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    from selfcorrect.backends.transformers.backend import HEAD_ROWS
    from selfcorrect.benchmarks.bbq import BBQ

    backend = load_backend(args.model, args.dtype)
    bbq = BBQ()
    states, n = [], 0
    with torch.inference_mode():
        for item in bbq.sample(bbq.items(), 400, 0):
            ids = torch.tensor([backend._encode(item.fields["question_text"])])
            states.append(backend.decoder(input_ids=ids).last_hidden_state[0])
            n += states[-1].shape[0]
            if n >= args.rows:
                break
        hidden = torch.cat(states)[: args.rows]
        gen = torch.Generator().manual_seed(0)
        vocab = backend.head.weight.shape[0]
        # each row read once or twice (an option's first token is read for every option)
        at = list(range(len(hidden))) + list(range(0, len(hidden), 3))
        targets = torch.randint(vocab, (len(at),), generator=gen).tolist()
        owner = [a // 8 for a in at]
        n_rows = len(hidden) // 8 + 1
        args_ = (hidden, at, targets, owner, n_rows)
        ways = {"whole": lambda: whole(backend, *args_),
                "pieces": lambda: backend._summed_logprobs(*args_)}  # fmt: skip
        got, walls, peaks = {}, {}, {}
        for way in ("pieces", "whole", "pieces"):  # pieces first and last: warm either way
            got[way], walls[way], peaks[way] = peak_above_start(ways[way])
    result = {
        "model": args.model,
        "dtype": args.dtype,
        "rows": len(hidden),
        "reads": len(at),
        "vocab": vocab,
        "head_rows": HEAD_ROWS,
        "bitwise_same": got["whole"] == got["pieces"],
        "max_abs_diff": max(abs(a - b) for a, b in zip(got["whole"], got["pieces"], strict=True)),
        "wall_s": walls,
        "peak_mib_above_start": peaks,
    }
    emit(result, args.json)


if __name__ == "__main__":
    main()
