"""The Python API: the same verbs as the CLI, for notebooks."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from selfcorrect.report import Report

from selfcorrect.backends.openai import PREFIX as OPENAI_PREFIX
from selfcorrect.backends.openai import ServedSettings, resolve_served
from selfcorrect.benchmarks import BENCHMARKS, get_benchmark
from selfcorrect.conditions import load_library
from selfcorrect.errors import SelfCorrectError, unknown_choice
from selfcorrect.registry import DEFAULT_MODEL, REGISTRY, is_installed, resolve

DEFAULT_CONDITIONS = ("baseline", "instruct", "negation")
DEFAULT_LIMIT = 264  # 6 items in each of BBQ's 11 categories x 2 contexts x 2 polarities
DEFAULT_OUT = "results"


@dataclass
class RunResult:
    directory: Path
    run_id: str
    summary: pd.DataFrame
    paired: pd.DataFrame
    manifest: dict


def _split(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.split(",")
    return [v.strip() for v in value if v and v.strip()]


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def run(
    models: str | Sequence[str] | None = None,
    benchmark: str = "bbq",
    conditions: str | Sequence[str] | None = None,
    categories: str | Sequence[str] | None = None,
    limit: int | None = DEFAULT_LIMIT,
    seed: int = 0,
    out: str | Path = DEFAULT_OUT,
    rounds: int = 0,
    readout: str | Sequence[str] = "logprob",
    backend: str = "transformers",
    critic: str | None = None,
    cot_temperature: float | None = None,
    library: str | Path | None = None,
    dtype: str = "bfloat16",
    device: str | None = None,
    batch_size: int = 64,
    n_boot: int = 1000,
    progress: bool = True,
    trust_remote_code: bool = False,
    base_url: str | None = None,
    tokenizer: str | None = None,
    concurrency: int = 8,
    ray: str | None = None,
    write_report: bool = True,
) -> RunResult:
    """Evaluate models on a benchmark under conditions; store everything in `out`; resume
    whatever is already stored there. `readout` may name both readouts to compare them on the
    same items; `critic` names a model that writes each feedback round (extrinsic);
    `cot_temperature` samples the reasoning steps (seeded by `seed`) instead of greedy.
    `openai:NAME` models are served at `base_url` (OpenAI-compatible; key from
    SELFCORRECT_API_KEY or OPENAI_API_KEY), with `tokenizer` for client-side templates.
    `ray` (a cluster address, or "local") runs each (model, condition) as a Ray task and
    merges the shards into `out`."""
    from selfcorrect import __version__
    from selfcorrect.backends import BACKENDS
    from selfcorrect.backends.base import Sampling
    from selfcorrect.engine import READOUTS, Plan, count_pending, execute
    from selfcorrect.manifest import data_hashes, hardware, peak_rss_mb
    from selfcorrect.parsing import PARSERS
    from selfcorrect.report import report_dir
    from selfcorrect.store import Store

    t_start = time.perf_counter()
    # what a Ray shard needs to repeat this run for one model and one condition
    shard_kwargs = {
        "benchmark": benchmark, "categories": categories, "limit": limit, "seed": seed,
        "rounds": rounds, "readout": readout, "backend": backend, "critic": critic,
        "cot_temperature": cot_temperature, "library": None if library is None else str(library),
        "dtype": dtype, "device": device, "batch_size": batch_size,
        "trust_remote_code": trust_remote_code, "base_url": base_url, "tokenizer": tokenizer,
        "concurrency": concurrency,
    }  # fmt: skip
    from selfcorrect.plan import expand_models

    model_names = expand_models(_split(models)) or [DEFAULT_MODEL]
    bench = get_benchmark(benchmark)
    lib = load_library(library)
    conds = lib.resolve(_split(conditions) or list(DEFAULT_CONDITIONS), bench.family)
    readouts = _split(readout) or ["logprob"]
    for r in readouts:
        if r not in READOUTS:
            raise unknown_choice("readout", r, READOUTS)
    if backend not in BACKENDS:
        raise unknown_choice("backend", backend, BACKENDS)
    if rounds < 0:
        raise SelfCorrectError(f"--rounds must be >= 0, got {rounds}")
    if limit is not None and limit < 1:
        raise SelfCorrectError(f"--limit must be >= 1 (or 'all'), got {limit}")
    if critic and rounds == 0:
        raise SelfCorrectError("--critic writes the feedback of each round: add --rounds R >= 1")
    if cot_temperature is not None and cot_temperature <= 0:
        raise SelfCorrectError(f"--cot-temperature must be > 0, got {cot_temperature}")
    if concurrency < 1:
        raise SelfCorrectError(f"--concurrency must be >= 1, got {concurrency}")
    served = ServedSettings(base_url or "", tokenizer, concurrency)
    # fail on any bad model before any work
    resolved = [_resolve_model(m, served) for m in model_names]
    critic_res = _resolve_model(critic, served) if critic else None
    needs_chat = [c.name for c in conds if c.requires_chat]
    for res in resolved:
        if needs_chat and res.kind == "base":
            raise SelfCorrectError(
                f"condition '{needs_chat[0]}' needs a chat template; model '{res.name}' is a "
                "base model without one"
            )
    items = bench.sample(bench.items(_split(categories) or None), limit, seed)
    sampling = Sampling(cot_temperature, seed) if cot_temperature else None

    store = Store(out)
    manifest = {
        "selfcorrect_version": __version__,
        "benchmark": benchmark,
        "conditions": {
            c.name: {
                "hash": c.version_hash(bench.family),
                "label": c.label,
                "provenance": c.provenance,
            }
            for c in conds
        },
        "library_version": lib.version,
        "library_sha256": lib.source_hash,
        "data_sha256": data_hashes(),
        "hardware": hardware(),
        "n_items": len(items),
        "items_sha256": hashlib.sha256("\n".join(i.uid for i in items).encode()).hexdigest(),
        "categories": _split(categories) or "all",
        "limit": limit,
        "seed": seed,
        "rounds": rounds,
        "readouts": readouts,
        "backend": backend,
        "critic": critic,
        "reasoning_sampling": None if sampling is None else vars(sampling),
        "argv": sys.argv,
        "models": {},
    }
    run_id = store.start_run(manifest)
    status = "interrupted"
    try:
        store.add_items(benchmark, bench.item_table(items))
        for c in conds:
            store.register_condition(
                benchmark,
                c.name,
                c.version_hash(bench.family),
                {
                    "label": c.label,
                    "provenance": c.provenance,
                    "source": c.source,
                    "steps": [[s.kind, s.text, s.max_tokens] for s in c.steps[bench.family]],
                },
            )
        critic_backend = None
        if critic_res is not None:
            critic_backend = _load_backend(
                critic_res, backend, dtype, device, trust_remote_code, served
            )
            manifest["critic_model"] = {"name": critic_res.name, "sha256": critic_res.sha256}
        plans = [
            Plan(
                benchmark,
                conds,
                items,
                rounds,
                lib,
                bench.family,
                readout=r,
                parser=PARSERS[bench.family],
                sampling=sampling,
                critic=critic_backend,
                critic_name=critic_res.name if critic_res else "",
            )
            for r in readouts
        ]
        labels = {
            res.name: res.name
            if backend == "transformers" or res.source == "openai"
            else f"{res.name}@{backend}"
            for res in resolved
        }
        for res in resolved:
            where = res.meta["base_url"] if res.source == "openai" else str(res.path)
            info = {"source": res.source, "path": where, **res.meta}
            store.register_model(labels[res.name], res.sha256, info)
            manifest["models"][labels[res.name]] = {"sha256": res.sha256, **info}
        with _progress(progress) as bar:
            if ray:
                _run_on_ray(ray, resolved, labels, conds, plans, store, run_id, manifest,
                            shard_kwargs, bar)  # fmt: skip
            for res in () if ray else resolved:  # on Ray the shards did this work
                label = labels[res.name]
                entry = manifest["models"][label]
                pending = sum(count_pending(store, label, p) for p in plans)
                entry["pending_at_start"] = pending
                if pending == 0:
                    continue
                task = bar.add_task(f"loading {label}", total=pending)
                t0 = time.perf_counter()
                engine = _load_backend(res, backend, dtype, device, trust_remote_code, served)
                if needs_chat and not engine.chat:
                    raise SelfCorrectError(
                        f"condition '{needs_chat[0]}' needs a chat template; model "
                        f"'{res.name}' has none"
                    )
                entry["backend"] = engine.info
                entry["load_s"] = round(time.perf_counter() - t0, 2)
                bar.update(task, description=label)
                entry["condition_s"] = {}
                for plan in plans:
                    timings = execute(
                        store,
                        run_id,
                        label,
                        engine,
                        plan,
                        batch_size,
                        on_progress=lambda n, task=task: bar.advance(task, n),
                    )
                    entry["condition_s"][plan.readout] = timings
                del engine
        status = "finished"
    finally:
        manifest["wall_s"] = round(time.perf_counter() - t_start, 2)
        manifest["peak_rss_mb"] = peak_rss_mb()
        store.update_run(run_id, manifest, status)
        store.close()
    if not write_report:
        return RunResult(Path(out), run_id, pd.DataFrame(), pd.DataFrame(), manifest)
    rep = report_dir(out, n_boot=n_boot, seed=seed)
    return RunResult(
        Path(out),
        run_id,
        rep.tables.get(f"{benchmark}_summary", pd.DataFrame()),
        rep.tables.get(f"{benchmark}_paired", pd.DataFrame()),
        manifest,
    )


def run_plan(
    path: str | Path, out: str | Path | None = None, progress: bool = True, ray: str | None = None
) -> Report:
    """A sweep plan (see selfcorrect.plan): every model in turn through every run of the plan,
    into one results directory; then one report with the verdicts."""
    from selfcorrect.plan import expand_models, load_plan
    from selfcorrect.report import report_dir

    plan = load_plan(path)
    target = Path(out or plan.out or DEFAULT_OUT)
    models = expand_models(plan.models)
    for entry in plan.runs:  # fail on a bad benchmark or condition before any model runs
        bench = get_benchmark(entry.benchmark)
        load_library().resolve(entry.conditions, bench.family)
    for model in models:
        for entry in plan.runs:
            limit = entry.limit if entry.limit is not None else plan.limit
            run(
                model,
                benchmark=entry.benchmark,
                conditions=entry.conditions,
                limit=None if limit == "all" else limit,
                seed=plan.seed,
                out=target,
                rounds=entry.rounds,
                readout=entry.readout,
                backend=plan.backend,
                base_url=plan.base_url,
                progress=progress,
                ray=ray,
                write_report=False,
            )
    return report_dir(target, n_boot=plan.bootstrap, seed=plan.seed)


def _run_on_ray(address, resolved, labels, conds, plans, store, run_id, manifest, kwargs, bar):
    """Every (model, condition) with answers still missing, as one Ray task each."""
    from dataclasses import replace

    from selfcorrect.distributed import run_shards
    from selfcorrect.engine import count_pending

    shards, pending = [], 0
    for res in resolved:
        for cond in conds:
            n = sum(count_pending(store, labels[res.name], replace(p, conditions=[cond]))
                    for p in plans)  # fmt: skip
            if n:
                shards.append((res.name, cond.name))
                pending += n
    manifest["ray"] = {"address": address, "shards": [list(s) for s in shards]}
    if not shards:
        return
    task = bar.add_task(f"{len(shards)} shards on Ray", total=pending)

    def done(shard, shard_manifest, added):
        entry = manifest["models"][labels[shard[0]]]
        got = shard_manifest["models"].get(labels[shard[0]], {})
        entry.setdefault("shards", {})[shard[1]] = {
            k: got.get(k) for k in ("backend", "load_s", "condition_s")
        } | {"answers_added": added, "hardware": shard_manifest.get("hardware")}
        bar.advance(task, added)

    run_shards(address, shards, kwargs, store, run_id, done)


def _resolve_model(name: str, served: ServedSettings):
    if name.startswith(OPENAI_PREFIX):
        return resolve_served(name, served)
    return resolve(name)


def _load_backend(res, backend, dtype, device, trust_remote_code, served=None):
    if res.source == "openai":
        from selfcorrect.backends.openai import OpenAIBackend

        return OpenAIBackend(res, served)
    if backend == "llamacpp":
        from selfcorrect.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(res)
    from selfcorrect.backends.transformers import TransformersBackend

    return TransformersBackend(res, dtype=dtype, device=device, trust_remote_code=trust_remote_code)


def report(
    directory: str | Path,
    n_boot: int = 1000,
    seed: int = 0,
    reference: str = "baseline",
    bias_variant: str = "bbq",
):
    """Recompute all metrics from a results directory and write report files (no model);
    `bias_variant` names an alternative BBQ bias score ("helm")."""
    from selfcorrect.metrics.bbq import bias_fns
    from selfcorrect.report import report_dir

    bias_fns(bias_variant)  # an unknown name fails before any work
    return report_dir(
        directory, n_boot=n_boot, seed=seed, reference=reference, bias_variant=bias_variant
    )


def models() -> pd.DataFrame:
    """The registry with size and whether each model is installed."""
    return pd.DataFrame(
        [
            {
                "name": s.name,
                "params_m": round(s.params / 1e6),
                "kind": s.kind,
                "family": s.family,
                "alignment": s.alignment,
                "size_mb": s.size_mb,
                "installed": is_installed(s),
                "install": s.install,
                "description": s.description,
            }
            for s in REGISTRY.values()
        ]
    )


def conditions(library: str | Path | None = None, benchmark: str | None = None) -> list[dict]:
    lib = load_library(library)
    out = []
    for c in lib.conditions.values():
        for bench in c.benchmarks:
            if benchmark and bench != benchmark:
                continue
            out.append(
                {
                    "name": c.name,
                    "label": c.label,
                    "benchmark": bench,
                    "provenance": c.provenance,
                    "source": c.source,
                    "aliases": list(c.aliases),
                    "hash": c.version_hash(bench),
                    "description": c.description,
                    "steps": [
                        {"kind": s.kind, "text": s.text, "max_tokens": s.max_tokens}
                        for s in c.steps[bench]
                    ],
                }
            )
    return out


def benchmarks() -> list[dict]:
    out = []
    for name in BENCHMARKS:
        b = get_benchmark(name)
        out.append({"name": name, "description": b.description, "categories": b.categories()})
    return out


# -- scoring predictions made elsewhere -------------------------------------------------------
PRED_ALIASES = ("pred", "prediction", "pred_index", "answer_index")


def read_predictions(path: str | Path) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise SelfCorrectError(f"no such predictions file: {p}")
    try:
        if p.suffix in (".jsonl", ".json") or p.name.endswith(".jsonl.gz"):
            df = pd.read_json(p, lines=True, dtype=False)
        else:
            df = pd.read_csv(p, keep_default_na=True)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SelfCorrectError(f"cannot parse predictions file {p}: {first}") from None
    pred_col = next((c for c in PRED_ALIASES if c in df.columns), None)
    missing = [c for c in ("category", "example_id") if c not in df.columns]
    if pred_col is None:
        missing.append("pred")
    if missing:
        raise SelfCorrectError(f"predictions file {p} lacks column(s): {', '.join(missing)}")
    df = df.rename(columns={pred_col: "pred"})
    pred = pd.to_numeric(df["pred"], errors="coerce")
    bad = df["pred"].notna() & (pred.isna() | ~pred.isin([0, 1, 2]))
    if bad.any():
        row = int(bad.idxmax())
        raise SelfCorrectError(
            f"predictions file {p}: row {row + 1} has pred {df['pred'][row]!r}; "
            "expected an option index 0, 1 or 2 (empty = unparseable)"
        )
    df["pred"] = pred.astype("Int64")
    try:
        df["example_id"] = df["example_id"].astype(int)
    except (ValueError, TypeError):
        raise SelfCorrectError(f"predictions file {p}: example_id must be integers") from None
    return df


def score(
    benchmark: str,
    path: str | Path,
    out: str | Path | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    reference: str = "baseline",
) -> dict[str, pd.DataFrame]:
    """Score a plain prediction table (category, example_id, pred 0-2 [, model, condition,
    round]) with the same metrics as `run`; writes CSV and Markdown next to it or into `out`."""
    from selfcorrect.report import write_tables

    if benchmark != "bbq":
        if benchmark in BENCHMARKS:
            raise SelfCorrectError(f"scoring outside predictions is not available for {benchmark}")
        get_benchmark(benchmark)  # raises the unknown-benchmark error
    bench = get_benchmark(benchmark)
    preds = read_predictions(path)
    table = bench.item_table(bench.items())
    unknown_cats = sorted(set(preds["category"]) - set(table["category"]))
    if unknown_cats:
        raise SelfCorrectError(
            f"unknown BBQ category '{unknown_cats[0]}' in {path} "
            f"(valid: {', '.join(bench.categories())})"
        )
    merged = preds.merge(table, on=["category", "example_id"], how="left", validate="many_to_one")
    if merged["uid"].isna().any():
        row = merged[merged["uid"].isna()].iloc[0]
        raise SelfCorrectError(f"{path}: no BBQ item {row['category']}:{row['example_id']}")
    keys = [k for k in ("model", "condition", "readout", "round") if k in merged.columns]
    if merged.duplicated(["uid", *keys]).any():
        raise SelfCorrectError(f"{path}: an item appears twice for the same model/condition/round")
    tables = bench.score(merged, n_boot=n_boot, seed=seed, reference=reference)
    target = Path(out) if out else Path(path).with_name(Path(path).stem + "-scores")
    try:
        write_tables(tables, target, f"selfcorrect score: {Path(path).name}")
    except OSError as exc:
        raise SelfCorrectError(f"cannot write to {target}: {exc.strerror}") from None
    return tables


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
