"""A copy of a results store holding some models only, for an interim report while the study
still runs (the store is only read: SQLite's online backup, safe beside a writer):

    python docs/results/subset.py study /tmp/interim qwen2.5-coder-0.5b-instruct
    selfcorrect report /tmp/interim --rules docs/results/rules.toml --bootstrap 2000
    selfcorrect analyze hidden /tmp/interim

Answers of a run still marked "running" are left out (its part is incomplete), unless
--keep-running; the models' hidden-state folders are copied beside."""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
from pathlib import Path

from selfcorrect.hidden import model_folder

DB = "results.sqlite"


def subset(source: Path, target: Path, models: list[str], keep_running: bool = False) -> dict:
    if (target / DB).exists():
        raise SystemExit(f"{target / DB} exists: choose a new folder")
    target.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(f"file:{source / DB}?mode=ro", uri=True)
    dst = sqlite3.connect(target / DB)
    try:
        src.backup(dst)
        marks = ",".join("?" * len(models))
        query = "select run_id from runs where status = 'running'"
        running = [] if keep_running else [r for (r,) in dst.execute(query)]
        for table in ("answers", "turns"):
            dst.execute(f"delete from {table} where model not in ({marks})", models)
            dst.executemany(f"delete from {table} where run_id = ?", [(r,) for r in running])
        runs = dst.execute("select run_id, manifest from runs").fetchall()
        dropped = [r for r, m in runs if r in running or not set(_models(m)) & set(models)]
        dst.executemany("delete from runs where run_id = ?", [(r,) for r in dropped])
        dst.commit()
        kept = dict(dst.execute("select model, count(*) from answers group by model").fetchall())
    finally:
        src.close()
        dst.close()
    for model in models:
        folder = model_folder(source, model)
        if folder.is_dir():
            shutil.copytree(folder, model_folder(target, model))
    return {"answers": kept, "runs dropped": len(dropped), "running left out": running}


def _models(manifest: str) -> list[str]:
    return list(json.loads(manifest).get("models") or [])  # as the cost table reads it


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", type=Path)
    ap.add_argument("target", type=Path)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--keep-running", action="store_true")
    a = ap.parse_args()
    print(json.dumps(subset(a.source, a.target, a.models, a.keep_running), indent=1))


if __name__ == "__main__":
    main()
