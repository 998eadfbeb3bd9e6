"""Two models at once, one thread each, against one after the other with two threads each: the
same answers, and how much sooner both are done. Each model runs the same small workload (BBQ
cloze scoring under baseline, then sampled chain of thought at T = 1) through the CLI into a
fresh store: first alone with 2 torch threads, one model after the other, then all models at
once, each process with 1 thread on its own core (taskset). Prints, per model, whether the
stored answers, option log-probabilities and reasoning texts of the two ways are bit for bit the
same, each run's wall time, and the throughput gain of running the models together.

    python perf/threads.py [--models qwen2.5-coder-1.5b-instruct,gemma-3-270m] [--items 48]
        [--cot-items 8] [--json out.json]"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from compare import answers, connect, emit  # perf/, beside this script


def command(model: str, out: Path, conditions: str, limit: int, batch: int) -> list[str]:
    exe = shutil.which("selfcorrect") or "selfcorrect"
    return [exe, "run", "--model", model, "--benchmark", "bbq", "--conditions", conditions,
            "--limit", str(limit), "--readout", "cloze", "--permute", "none", "--seed", "0",
            "--cot-samples", "1", "--cot-temperature", "1.0", "--batch-size", str(batch),
            "--out", str(out), "--quiet"]  # fmt: skip


def workload(model: str, out: Path, items: int, cot_items: int) -> list[list[str]]:
    return [command(model, out, "baseline", items, items),
            command(model, out, "cot", cot_items, cot_items)]  # fmt: skip


def run_chain(cmds: list[list[str]], threads: int, core: int | None) -> subprocess.Popen:
    """The workload's commands one after the other in one shell, `threads` torch threads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pin = f"taskset -c {core} " if core is not None else ""
    script = " && ".join(pin + subprocess.list2cmdline(c) for c in cmds)
    return subprocess.Popen(["bash", "-c", script], env=env, stdout=subprocess.DEVNULL)


def wall(store: Path) -> float:
    with connect(store) as c:
        rows = c.execute("SELECT manifest FROM runs").fetchall()
    return round(sum(json.loads(m)["wall_s"] for (m,) in rows), 1)


def texts(store: Path) -> dict:
    with connect(store) as c:
        rows = c.execute("SELECT condition, uid, step, text FROM turns").fetchall()
    return {r[:3]: r[3] for r in rows}


def same(a: Path, b: Path) -> dict:
    keys = ["condition", "uid", "round", "readout"]
    fa, fb = (answers(s, ", ".join([*keys, "pred", "logprobs"])) for s in (a, b))
    both = fa.merge(fb, on=keys, suffixes=("_a", "_b"))
    ta, tb = texts(a), texts(b)
    return {
        "answers": len(both),
        "same_pred": int((both["pred_a"] == both["pred_b"]).sum()),
        "same_logprobs": int((both["logprobs_a"] == both["logprobs_b"]).sum()),
        "turns": len(ta), "same_turn_texts": sum(ta.get(k) == v for k, v in tb.items()),
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="qwen2.5-coder-1.5b-instruct,gemma-3-270m")
    ap.add_argument("--items", type=int, default=48)
    ap.add_argument("--cot-items", type=int, default=8)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    models = args.models.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        alone, together = {}, {}
        t = time.perf_counter()
        for m in models:  # one after the other, 2 threads each
            alone[m] = Path(tmp) / f"alone-{m}"
            p = run_chain(workload(m, alone[m], args.items, args.cot_items), 2, None)
            if p.wait():
                raise SystemExit(f"{m}: the 2-thread run failed")
        seq = round(time.perf_counter() - t, 1)
        t = time.perf_counter()
        procs = {}
        for core, m in enumerate(models):  # all at once, 1 thread each, own core
            together[m] = Path(tmp) / f"together-{m}"
            procs[m] = run_chain(workload(m, together[m], args.items, args.cot_items), 1,
                                 core % (os.cpu_count() or 1))  # fmt: skip
        if any(p.wait() for p in procs.values()):
            raise SystemExit("a 1-thread run failed")
        par = round(time.perf_counter() - t, 1)
        result = {
            "models": models, "items": args.items, "cot_items": args.cot_items,
            "cpu_count": os.cpu_count(),
            "one_after_the_other_2_threads_s": seq, "together_1_thread_each_s": par,
            "gain": round(seq / par, 3),
            "per_model": {m: {"run_wall_s_2_threads_alone": wall(alone[m]),
                              "run_wall_s_1_thread_together": wall(together[m]),
                              **same(alone[m], together[m])} for m in models},
        }  # fmt: skip
    emit(result, args.json)


if __name__ == "__main__":
    main()
