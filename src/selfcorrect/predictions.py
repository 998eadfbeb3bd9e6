"""Predictions made by another tool, read strictly: a file that cannot be scored exactly is
refused with one line naming the row and the problem, never scored on a guess. CSV, or JSON
lines (.jsonl, .json, .jsonl.gz); optional columns `model`, `condition`, `readout` (non-empty
text) and `round` (an integer >= 0).

BBQ: `category`, `example_id` (integers only), `pred` (the chosen option index 0-2; empty =
unparseable; aliases prediction, pred_index, answer_index).
Law school: `student` (the row id of the data), `group` (Black, white, female, male, or
Black/female ... when both were varied), and `p_yes` (0-1) or `answer` (yes/no; empty =
unparseable)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pandas as pd

from selfcorrect.benchmarks.base import Benchmark
from selfcorrect.errors import SelfCorrectError

PRED_ALIASES = ("pred", "prediction", "pred_index", "answer_index")
TEXT_KEYS = ("model", "condition", "readout")
OPTIONAL = (*TEXT_KEYS, "round")
_INT = re.compile(r"^[+-]?\d+$")
_INT64 = 2**63 - 1


def _read_raw(p: Path) -> pd.DataFrame:
    try:
        if p.suffix in (".jsonl", ".json") or p.name.endswith(".jsonl.gz"):
            df = pd.read_json(p, lines=True, dtype=False)
        else:
            df = pd.read_csv(p, dtype=str, keep_default_na=False, na_filter=False)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SelfCorrectError(f"cannot parse predictions file {p}: {first}") from None
    if df.empty:
        raise SelfCorrectError(f"predictions file {p} has no rows")
    return df


def _blank(v) -> bool:
    return (
        v is None
        or (isinstance(v, float) and math.isnan(v))
        or (isinstance(v, str) and not v.strip())
    )


def _as_int(v, what: str, where: str, lo: int | None = None, hi: int | None = None) -> int:
    """An integer written as an integer: bools, fractions and text other than digits fail."""
    ok = False
    if isinstance(v, str) and _INT.match(v.strip()):
        v, ok = int(v.strip()), True
    elif isinstance(v, int) and not isinstance(v, bool):
        ok = True
    elif isinstance(v, float) and v.is_integer() and what == "pred":  # "1.0" from a float column
        v, ok = int(v), True
    if not ok or abs(v) > _INT64 or (lo is not None and v < lo) or (hi is not None and v > hi):
        bounds = f" in [{lo}, {hi}]" if hi is not None else f" >= {lo}" if lo is not None else ""
        raise SelfCorrectError(f"{where}: {what} {v!r} is not an integer{bounds}")
    return v


def _pred(v, where: str) -> int | None:
    if _blank(v):
        return None
    if isinstance(v, str):
        try:
            f = float(v)
        except ValueError:
            f = None
        if f is not None and f.is_integer():
            v = int(f)
    try:
        return _as_int(v, "pred", where, 0, 2)
    except SelfCorrectError:
        raise SelfCorrectError(
            f"{where} has pred {v!r}; expected an option index 0, 1 or 2 (empty = unparseable)"
        ) from None


def _text(v, col: str, where: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise SelfCorrectError(f"{where}: {col} must be non-empty text, got {v!r}")
    return v.strip()


def _run_keys(rec: dict, where: str) -> dict:
    """The optional model, condition, readout and round of a row, checked."""
    out = {col: _text(rec[col], col, where) for col in TEXT_KEYS if col in rec}
    if "round" in rec:
        out["round"] = _as_int(rec["round"], "round", where, lo=0)
    return out


def read_predictions(path: str | Path) -> pd.DataFrame:
    """The file as a typed table: category, example_id (int), pred (Int64), and whichever of
    model, condition, readout, round it has."""
    p = Path(path)
    if not p.is_file():
        raise SelfCorrectError(f"no such predictions file: {p}")
    df = _read_raw(p)
    pred_col = next((c for c in PRED_ALIASES if c in df.columns), None)
    missing = [c for c in ("category", "example_id") if c not in df.columns]
    if pred_col is None:
        missing.append("pred")
    if missing:
        raise SelfCorrectError(f"predictions file {p} lacks column(s): {', '.join(missing)}")
    valid = {"category", "example_id", pred_col, *OPTIONAL}
    extra = [str(c) for c in df.columns if c not in valid]
    if extra:
        raise SelfCorrectError(
            f"predictions file {p}: unknown column '{extra[0]}' (valid: category, example_id, "
            f"pred, {', '.join(OPTIONAL)})"
        )
    rows = []
    for k, rec in enumerate(df.to_dict("records")):
        where = f"predictions file {p}: row {k + 1}"
        row = {"category": _text(rec["category"], "category", where),
               "example_id": _as_int(rec["example_id"], "example_id", where),
               "pred": _pred(rec[pred_col], where)}  # fmt: skip
        rows.append(row | _run_keys(rec, where))
    out = pd.DataFrame(rows)
    out["pred"] = out["pred"].astype("Int64")
    return out


def _check_columns(p: Path, df: pd.DataFrame, required: tuple, extra: tuple) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise SelfCorrectError(f"predictions file {p} lacks column(s): {', '.join(missing)}")
    valid = (*required, *extra, *OPTIONAL)
    bad = [str(c) for c in df.columns if c not in valid]
    if bad:
        raise SelfCorrectError(f"predictions file {p}: unknown column '{bad[0]}' "
                               f"(valid: {', '.join(valid)})")  # fmt: skip


def _p_yes(rec: dict, where: str) -> float:
    if "p_yes" in rec:
        v = rec["p_yes"]
        try:
            f = float(v) if not isinstance(v, bool) else math.nan
        except (TypeError, ValueError):
            f = math.nan
        if not (0.0 <= f <= 1.0):
            raise SelfCorrectError(f"{where}: p_yes must be a number in [0, 1], got {v!r}")
        return f
    v = rec["answer"]
    if _blank(v):
        return math.nan
    if not isinstance(v, str) or v.strip().lower() not in ("yes", "no"):
        raise SelfCorrectError(f"{where}: answer must be yes, no or empty, got {v!r}")
    return 1.0 if v.strip().lower() == "yes" else 0.0


LAW_GROUPS = {"Black": "race", "white": "race", "female": "sex", "male": "sex",
              **{f"{r}/{s}": "race+sex" for r in ("Black", "white")
                 for s in ("female", "male")}}  # fmt: skip


def law_outcomes(path: str | Path, bench: Benchmark) -> pd.DataFrame:
    """A law-school predictions file as outcomes (with p_yes), joined with the students."""
    p = Path(path)
    if not p.is_file():
        raise SelfCorrectError(f"no such predictions file: {p}")
    df = _read_raw(p)
    has = "p_yes" if "p_yes" in df.columns else "answer"
    _check_columns(p, df, ("student", "group", has), ())
    students = {it.meta["student"]: it for it in bench.items()}
    rows = []
    for k, rec in enumerate(df.to_dict("records")):
        where = f"predictions file {p}: row {k + 1}"
        sid = _as_int(rec["student"], "student", where)
        group = _text(rec["group"], "group", where)
        if sid not in students:
            raise SelfCorrectError(f"{where}: no student {sid} in the law-school data")
        if group not in LAW_GROUPS:
            raise SelfCorrectError(f"{where}: group {group!r} (valid: {', '.join(LAW_GROUPS)})")
        m = students[sid].meta
        row = {"uid": f"law:{sid}|{group}", "base_uid": f"law:{sid}", "student": sid,
               "group": group, "attribute": LAW_GROUPS[group], "lsat": m["lsat"],
               "gpa": m["gpa"], "p_yes": _p_yes(rec, where)}  # fmt: skip
        rows.append(row | _run_keys(rec, where))
    out = pd.DataFrame(rows)
    keys = [k for k in OPTIONAL if k in out.columns]
    if out.duplicated(["uid", *keys]).any():
        raise SelfCorrectError(f"{path}: a student's version appears twice for the same run")
    return out.assign(pred=pd.array([pd.NA] * len(out), dtype="Int64"))


def bbq_outcomes(path: str | Path, bench: Benchmark) -> pd.DataFrame:
    return join_items(read_predictions(path), bench, path)


def join_items(preds: pd.DataFrame, bench: Benchmark, path: str | Path) -> pd.DataFrame:
    """The predictions joined with their benchmark items (by category and example_id), as an
    outcome table the metrics read; unknown items and duplicates are refused."""
    table = bench.item_table(bench.items())
    unknown = sorted(set(preds["category"]) - set(table["category"]))
    if unknown:
        raise SelfCorrectError(
            f"unknown {bench.name.upper()} category '{unknown[0]}' in {path} "
            f"(valid: {', '.join(bench.categories())})"
        )
    merged = preds.merge(table, on=["category", "example_id"], how="left", validate="many_to_one")
    if merged["uid"].isna().any():
        row = merged[merged["uid"].isna()].iloc[0]
        raise SelfCorrectError(f"{path}: no {bench.name.upper()} item "
                               f"{row['category']}:{row['example_id']}")  # fmt: skip
    keys = [k for k in OPTIONAL if k in merged.columns]
    if merged.duplicated(["uid", *keys]).any():
        raise SelfCorrectError(f"{path}: an item appears twice for the same model/condition/round")
    return merged
