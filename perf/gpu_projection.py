"""What a results store's work would cost on one GPU: a projection, not a measurement.

Scoring (every stored answer read from log-probabilities: letter, cloze, pronoun, yes/no) is
projected at the H100 throughput measured by perf/gpu_full_bbq.py on 2026-11-27 (156.6
answers/s, a random-weight Llama-2-7B shape, letter readout; docs/performance.md). The
packaged models are 5-50 times smaller and that run was bound by host work per answer (60%
GPU utilisation), but most of a study's answers are cloze answers, which score three option
texts of a few tokens each instead of three letters: the rate was not measured for them, so
the scoring time is a projection, not a bound. Generation (reasonings, generated answers) is
projected at --decode-rate tokens/s, which was NOT measured on a GPU here (no device was lent
to the study's sessions): the default, 5,000 tokens/s for 64 rows per step, is an
assumption, and the table gives 2,000 and 20,000 beside it. Generated tokens are counted with
each model's tokenizer where it loads (else characters / 4).

    python perf/gpu_projection.py STORE [--decode-rate 5000] [--json out.json]"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from compare import connect  # perf/, beside this script

SCORING_PER_S = 156.6  # H100, perf/results-2026-11-27-h100-stackedkv.json
GENERATED = ("generate",)  # readouts whose answer is generated text


def _token_counter(model: str):
    try:
        from transformers import AutoTokenizer

        from selfcorrect.registry import resolve

        tok = AutoTokenizer.from_pretrained(str(resolve(model).path))
        return lambda text: len(tok(text, add_special_tokens=False)["input_ids"])
    except Exception:  # a fake or an API model: no local tokenizer
        return lambda text: max(1, len(text) // 4)


def projection(store_dir: Path, decode_rate: float) -> pd.DataFrame:
    con = connect(store_dir)
    try:
        answers = pd.read_sql_query(
            "SELECT model, readout, COUNT(*) AS n, SUM(LENGTH(COALESCE(raw, ''))) AS chars "
            "FROM answers GROUP BY model, readout", con)  # fmt: skip
        turns = pd.read_sql_query("SELECT model, text FROM turns", con)
    finally:
        con.close()
    rows = []
    for model, part in answers.groupby("model"):
        count = _token_counter(model)
        scored = int(part.loc[~part["readout"].isin(GENERATED), "n"].sum())
        texts = turns.loc[turns["model"] == model, "text"]
        reasoning_tokens = int(sum(count(t) for t in texts))
        gen = part[part["readout"].isin(GENERATED)]
        answer_tokens = int(gen["chars"].sum() // 4)  # short answers: the estimate suffices
        tokens = reasoning_tokens + answer_tokens
        rows.append({
            "model": model, "scored answers": scored, "reasonings": len(texts),
            "generated tokens": tokens,
            "scoring s (measured rate)": round(scored / SCORING_PER_S),
            **{f"generation s at {r:,.0f} tok/s": round(tokens / r)
               for r in (2000.0, decode_rate, 20000.0)},
        })  # fmt: skip
    out = pd.DataFrame(rows)
    if not out.empty:
        key = f"generation s at {decode_rate:,.0f} tok/s"
        out["projected GPU minutes"] = ((out["scoring s (measured rate)"] + out[key]) / 60).round(1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("store", type=Path)
    ap.add_argument("--decode-rate", type=float, default=5000.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    table = projection(args.store, args.decode_rate)
    print(table.to_string(index=False))
    if args.json:
        args.json.write_text(json.dumps(table.to_dict("records"), indent=2))


if __name__ == "__main__":
    main()
