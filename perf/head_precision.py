"""How much the bf16 scoring head's rounding moves a law-school parity.

A bf16 model's head writes its logits in bf16: at logit magnitudes of 16 to 32 they sit on a
grid of 0.125 nats, so a one-token yes/no readout's p(yes) takes only a few values (the 1.5B's
Q+IF answers in the study's store: 6 distinct yes-no logit gaps over 2,000 answers), while the
parity it measures is about one point. This script takes a store's law answers for a sample of
students, recomputes each prompt's last hidden state once (the same bf16 model, prompt KV
shared), and reads it through two heads: the bf16 one the study uses (rounded logits; compared
with the stored log-probabilities) and the same weights in fp32 (unrounded).
It prints the parity, r with GPA and LSAT under each head on the same students, the paired
difference with a bootstrap CI, and how far the bf16 head is from the stored answers.

    python perf/head_precision.py --store study --model qwen2.5-coder-1.5b-instruct \
        --condition instruct --students 200 --json perf/results-DATE-cpu2-head-precision.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from compare import emit, load_backend  # perf/, beside this script

from selfcorrect.backends.base import common_prefix


def law_answers(store: Path, model: str, condition: str, students: int, seed: int):
    """The store's law answers of `model` under `condition` for a seeded sample of students
    answered as both Black and white (joined with their metadata), and the exact prompt text
    each was scored on."""
    from selfcorrect.store import Store

    st = Store(store, create=False, read_only=True)
    try:
        df = st.outcomes("law")
        prompts = dict(st.conn.execute(
            "SELECT uid, prompt FROM answers WHERE model=? AND benchmark='law' AND condition=? "
            "AND round=0", (model, condition)).fetchall())  # fmt: skip
    finally:
        st.close()
    df = df[(df["model"] == model) & (df["condition"] == condition) & (df["round"] == 0)]
    both = df.groupby("student")["group"].nunique()
    pool = np.sort(both[both == 2].index.to_numpy())
    pick = np.random.default_rng(seed).choice(pool, size=min(students, len(pool)), replace=False)
    df = df[df["student"].isin(pick)].sort_values(["student", "group"]).reset_index(drop=True)
    return df, [prompts[u] for u in df["uid"]]


def last_states(backend, prefixes: list[list[int]], batch: int) -> list:
    """Each prefix's last-position hidden state (bf16), computed through the backend's prefill
    with the prefixes' shared leading tokens in its prompt KV cache."""
    shared = min(common_prefix(p, prefixes[0]) for p in prefixes)
    kvs, _ = backend.prefill([prefixes[0][:shared]])
    backend._kv.put(prefixes[0][:shared], *kvs[0])
    seen, head = [], backend.last_logits

    def capture(hidden):
        seen.append(hidden.detach().clone())
        return head(hidden)

    backend.last_logits = capture
    try:
        for a in range(0, len(prefixes), batch):
            backend.prefill(prefixes[a : a + batch])
    finally:
        backend.last_logits = head
    return [row for h in seen for row in h]


def with_logprobs(df, lps: np.ndarray):
    """The answers with their options' log-probabilities (and probabilities) replaced."""
    probs = np.exp(lps)
    return df.assign(logprobs=[json.dumps(x.tolist()) for x in lps],
                     probs=[json.dumps(x.tolist()) for x in probs])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, default=Path("study"))
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--condition", default="instruct")
    ap.add_argument("--students", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    import torch

    from selfcorrect.backends.base import candidate_tokens
    from selfcorrect.backends.transformers.head import Fp32Head
    from selfcorrect.metrics import law

    df, texts = law_answers(args.store, args.model, args.condition, args.students, args.seed)
    backend = load_backend(args.model, "bfloat16")
    prefixes, targets = [], []
    for text, cands in zip(texts, df["candidates"], strict=True):
        fulls, start = candidate_tokens(backend._encode, text, json.loads(cands))
        assert all(len(f) == start + 1 for f in fulls), "an option is not one token"
        prefixes.append(fulls[0][:start])
        targets.append([f[start] for f in fulls])
    t = time.perf_counter()
    with torch.inference_mode():
        hidden = torch.stack(last_states(backend, prefixes, args.batch))
        heads = {"bf16": backend.last_logits(hidden),  # what the study computes
                 "fp32": Fp32Head(backend.head)(hidden)}  # --head-dtype float32  # fmt: skip
    wall = round(time.perf_counter() - t, 1)
    idx = torch.tensor(targets)
    lps = {k: torch.log_softmax(v, dim=-1).gather(1, idx).double().numpy()
           for k, v in heads.items()}  # fmt: skip
    stored = np.array([json.loads(x) for x in df["logprobs"]])
    gap = {k: np.round(v[:, 0] - v[:, 2], 6) for k, v in lps.items()}
    result = {"args": {k: str(v) for k, v in vars(args).items()}, "torch": torch.__version__,
              "answers": len(df), "students": int(df["student"].nunique()), "wall_s": wall,
              "bf16_vs_stored": {
                  "exact_share": round(float((np.abs(lps["bf16"] - stored).max(1) == 0).mean()), 4),
                  "max_abs_dlogprob": round(float(np.abs(lps["bf16"] - stored).max()), 4),
                  "median_abs_dlogprob": round(float(np.median(np.abs(lps["bf16"] - stored))), 4)},
              "distinct_yes_no_gaps": {k: int(len(np.unique(v))) for k, v in gap.items()},
              "distinct_yes_no_gaps_stored": int(len(np.unique(np.round(stored[:, 0] - stored[:, 2],
                                                                        6))))}  # fmt: skip
    frames = {"stored": df, **{k: with_logprobs(df, v) for k, v in lps.items()}}
    for name, frame in frames.items():
        s = law.summary(frame, n_boot=2000, seed=0).iloc[0]
        keep = [c for c in s.index if "parity" in c or c.startswith("r_")]
        result[name] = {c: round(float(s[c]), 4) for c in keep}
    yes = {k: law.p_yes(law.with_run_keys(f)) for k, f in frames.items()}
    ps = {k: law.per_student(f, "race") for k, f in yes.items()}
    d = (ps["bf16"]["p_one"] - ps["bf16"]["p_two"]) - (ps["fp32"]["p_one"] - ps["fp32"]["p_two"])
    d = 100 * d.to_numpy()
    boot = np.random.default_rng(0).choice(d, size=(2000, len(d))).mean(1)
    result["parity_bf16_minus_fp32_points"] = {
        "mean": round(float(d.mean()), 3), "ci95": [round(float(x), 3) for x in
                                                    np.quantile(boot, [0.025, 0.975])],
        "per_student_sd": round(float(d.std(ddof=1)), 3)}  # fmt: skip
    py = {k: 100 * f["p_yes"].to_numpy() for k, f in yes.items()}
    result["p_yes_bf16_minus_fp32_points"] = {
        "median_abs": round(float(np.median(np.abs(py["bf16"] - py["fp32"]))), 3),
        "max_abs": round(float(np.abs(py["bf16"] - py["fp32"]).max()), 3)}  # fmt: skip
    emit(result, args.json)


if __name__ == "__main__":
    main()
