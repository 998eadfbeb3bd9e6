"""Gemma 3's reasoning beyond its sliding window: the decode loop, which cuts the window
itself since 2026-12-07, against the routing it replaces (rows whose prompt and new tokens
outgrow the window sent to model.generate, one row at a time when sampled). Runs the
law-school Q+IF+CoT part (the study's longest reasoning prompts) on N students both ways into
two fresh stores; prints the wall time of each, how many reasoning rows each path decoded and
how many answers agree (sampled rows beyond the window draw from another generator on the old
path, so they may differ); then, greedy on the same reasoning prompts, how many of the loop's
texts are model.generate's token for token. With --lengths instead: the prompt length of
every reasoning row of the study plan's chain-of-thought parts for the model (nothing decoded:
generate returns empty texts; one reasoning per item, the samples share their prompt), and how
many would outgrow the window with their 256 new tokens.

    python perf/window_decode.py [--model gemma-3-270m] [--students 8] [--dtype bfloat16]
        [--lengths] [--json out.json]"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from compare import answers, emit  # perf/, beside this script


def old_routing(generate):
    """generate() as before: rows that outgrow the window go to model.generate."""

    def routed(self, prompts, max_tokens, sampling=None, keys=None, on_done=None):
        far = [i for i, p in enumerate(prompts)
               if len(self._encode(p)) + max_tokens > self._window]  # fmt: skip
        near = [i for i in range(len(prompts)) if i not in set(far)]
        texts = [""] * len(prompts)
        if near:
            done = None if on_done is None else lambda j, t: on_done(near[j], t)
            sub = generate(self, [prompts[i] for i in near], max_tokens, sampling,
                           None if keys is None else [keys[i] for i in near], done)  # fmt: skip
            for i, t in zip(near, sub, strict=True):
                texts[i] = t
        if far:
            sub = self.generate_hf([prompts[i] for i in far], max_tokens, sampling,
                                   None if keys is None else [keys[i] for i in far])  # fmt: skip
            for i, t in zip(far, sub, strict=True):
                texts[i] = t
                if on_done is not None:
                    on_done(i, t)
        return texts

    return routed


PLAN = Path(__file__).resolve().parents[1] / "docs" / "results" / "plan.toml"


def plan_lengths(model: str, dtype: str, limit: int | None = None) -> dict:
    """`limit` (a quick check) replaces each part's sample size; the plan's otherwise."""
    from selfcorrect import api
    from selfcorrect.backends.transformers.backend import TransformersBackend
    from selfcorrect.plan import load_plan

    generate, seen = TransformersBackend.generate, []

    def record(self, prompts, max_tokens, sampling=None, keys=None, on_done=None):
        seen.extend((len(self._encode(p)), max_tokens, self._window) for p in prompts)
        for i in range(len(prompts)) if on_done is not None else ():
            on_done(i, "")
        return [""] * len(prompts)

    parts = [s for s in load_plan(PLAN, only=model, dtype=dtype).specs if "cot" in s.conditions]
    out = {}
    TransformersBackend.generate = record
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for k, spec in enumerate(parts):
                seen.clear()
                changes = {"out": Path(tmp) / str(k), "cot_samples": 1}
                api.run(spec.shard(**changes, **({"limit": limit} if limit else {})),
                        progress=False, write_report=False)  # fmt: skip
                n = [x for x, _, _ in seen]
                beyond = sum(x + m > w for x, m, w in seen)
                out[spec.benchmark] = {"rows": len(n), "median": statistics.median(n),
                                       "max": max(n), "new_tokens": seen[0][1],
                                       "window": seen[0][2], "beyond_window": beyond}  # fmt: skip
    finally:
        TransformersBackend.generate = generate
    return {"model": model, "prompt_tokens": out}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--students", type=int, default=8)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--lengths", action="store_true")
    ap.add_argument("--lengths-limit", type=int, help="with --lengths: items per part (a check)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.lengths:
        return emit(plan_lengths(args.model, args.dtype, args.lengths_limit), args.json)
    from selfcorrect import api
    from selfcorrect.backends.transformers.backend import TransformersBackend

    generate, hf = TransformersBackend.generate, TransformersBackend.generate_hf
    seen: dict = {"prompts": [], "hf_rows": 0}

    def counted_hf(self, prompts, *a, **k):
        seen["hf_rows"] += len(prompts)
        return hf(self, prompts, *a, **k)

    def recorded(inner):
        def gen(self, prompts, max_tokens, *a, **k):
            seen["backend"], seen["max_tokens"] = self, max_tokens
            if max_tokens > 16:  # the reasoning turn, not the short answer turn
                seen["prompts"] += list(prompts)
            return inner(self, prompts, max_tokens, *a, **k)

        return gen

    walls, hf_rows, frames = {}, {}, {}
    TransformersBackend.generate_hf = counted_hf
    with tempfile.TemporaryDirectory() as tmp:
        for way, inner in (("loop", generate), ("old routing", old_routing(generate))):
            TransformersBackend.generate = recorded(inner)
            seen["hf_rows"], seen["prompts"] = 0, []
            out = Path(tmp) / way.replace(" ", "-")
            t = time.perf_counter()
            api.run(args.model, benchmark="law", conditions="cot", limit=args.students,
                    cot_temperature=1.0, batch_size=64, dtype=args.dtype, out=out,
                    progress=False, write_report=False)  # fmt: skip
            walls[way] = round(time.perf_counter() - t, 1)
            hf_rows[way] = seen["hf_rows"]
            frames[way] = answers(out, "uid, pred").set_index("uid")["pred"]
    TransformersBackend.generate, TransformersBackend.generate_hf = generate, hf
    backend, prompts, n_new = seen["backend"], seen["prompts"], seen["max_tokens"]
    lengths = [len(backend._encode(p)) for p in prompts]
    beyond = sum(n + n_new > backend._window for n in lengths)
    # greedy: the loop against model.generate on the same reasoning prompts
    backend._kv.clear()
    loop = [backend._encode(t) for t in backend.generate(prompts, n_new)]
    ref = [backend._encode(t) for t in backend.generate_hf(prompts, n_new)]
    pairs = list(zip(loop, ref, strict=True))
    agree = [next((k for k, (a, b) in enumerate(zip(x, y, strict=False)) if a != b),
                  min(len(x), len(y))) for x, y in pairs]  # fmt: skip
    same = frames["loop"].reindex(frames["old routing"].index) == frames["old routing"]
    emit({
        "model": args.model, "dtype": args.dtype, "students": args.students,
        "reasoning_rows": len(prompts), "window": backend._window, "new_tokens": n_new,
        "prompt_tokens_median": statistics.median(lengths),
        "rows_beyond_window": beyond, "wall_s": walls,
        "rows_sent_to_model_generate": hf_rows,
        "answers_same": f"{int(same.sum())} of {len(same)}",
        "greedy_texts_identical": f"{sum(a == b for a, b in pairs)} of {len(pairs)}",
        "greedy_tokens_agreeing_before_first_difference_median": statistics.median(agree),
    }, args.json)  # fmt: skip


if __name__ == "__main__":
    main()
