"""The runner: between the verbs (api, cli) and the engine. A run specification is prepared
(every model resolved, items drawn, conditions and texts checked: all before any work), the
run, its items, conditions and models are registered in one store transaction, then each
model loads once and runs every job, or the (model, condition) shards go to Ray."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from selfcorrect import backends, distributed, faults
from selfcorrect.backends import Conversation, LoadOptions, Sampling
from selfcorrect.benchmarks.base import Item
from selfcorrect.catalog import BenchmarkKit, get_kit
from selfcorrect.conditions import Condition, Library, step_specs
from selfcorrect.engine import BRANCH, Job, count_pending, execute
from selfcorrect.errors import SelfCorrectError
from selfcorrect.hidden import HiddenWriter, estimate_bytes, parse_layers
from selfcorrect.manifest import data_hashes, hardware, peak_rss_mb, process_info, reset_peak_rss
from selfcorrect.registry import ARITHMETIC_KEYS, ResolvedModel
from selfcorrect.rules_file import RULES_LOGIC, default_rules_path, load_rules
from selfcorrect.spec import RunSpec
from selfcorrect.store import DB_NAME, Store
from selfcorrect.version import __version__


@dataclass(frozen=True)
class ModelRun:
    """A model as this run uses it: its label in the store, what it is, which backend runs it."""

    label: str
    resolved: ResolvedModel
    backend: str


@dataclass
class Prepared:
    spec: RunSpec
    kit: BenchmarkKit
    library: Library
    conditions: list[Condition]
    items: list[Item]
    models: list[ModelRun]
    critic: ModelRun | None
    options: LoadOptions
    n_base: int  # items drawn (before option orders)


@dataclass
class Outcome:
    directory: Path
    run_id: str
    manifest: dict


def load_options(spec: RunSpec) -> LoadOptions:
    return LoadOptions(spec.dtype, spec.device, spec.trust_remote_code, spec.base_url,
                       spec.tokenizer, spec.concurrency, spec.head_dtype)  # fmt: skip


def model_run(name: str, spec: RunSpec, options: LoadOptions, cache: dict | None = None):
    """Resolve a model name (files found and their sha256 checked), once per `cache`."""
    backend, prefixed = backends.backend_for(name, spec.backend)
    key = (name, backend, options)
    if cache is None or key not in cache:
        res = backends.resolve_model(name, spec.backend, options)
        default = backend == backends.DEFAULT_BACKEND
        label = res.name if default or prefixed else f"{res.name}@{backend}"
        run = ModelRun(label, res, backend)
        if cache is None:
            return run
        cache[key] = run
    return cache[key]


def _check_device(device: str | None) -> None:
    if device and device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise SelfCorrectError(f"--device {device}: no CUDA device is available here")


def prepare(spec: RunSpec, cache: dict | None = None) -> Prepared:
    """Everything a run needs that can fail, checked before any work: models resolved,
    conditions usable with every model, the device present, items drawn."""
    kit = get_kit(spec.benchmark)
    lib, conds = spec.library_conditions()
    options = load_options(spec)
    models = [model_run(m, spec, options, cache) for m in spec.models]
    critic = model_run(spec.critic, spec, options, cache) if spec.critic else None
    needs_chat = [c.name for c in conds if c.requires_chat]
    for m in models:
        if needs_chat and m.resolved.kind == "base":
            raise SelfCorrectError(
                f"condition '{needs_chat[0]}' needs a chat template; model '{m.resolved.name}' "
                "is a base model without one"
            )
    _check_device(spec.device)
    bench = kit.benchmark
    base = bench.sample(bench.items(list(spec.categories) or None), spec.limit, spec.seed)
    # an item under each option order (or counterfactual version), adjacent
    items = bench.variants(base, spec.permute, counterfactual_mode=spec.counterfactual)
    items = [sampled(it, k) for it in items for k in range(spec.cot_samples)]
    return Prepared(spec, kit, lib, conds, items, models, critic, options, len(base))


def sampled(item: Item, k: int) -> Item:
    """Sample k of an item's reasoning (k = 0 is the item itself): its own uid, so its own
    seed and stored answers; combined with the other samples by the metrics."""
    if k == 0:
        return item
    meta = {**item.meta, "sample": k, "base_uid": item.meta.get("base_uid", item.uid)}
    return replace(item, uid=f"{item.uid}#s{k}", meta=meta)


def _sampling(spec: RunSpec) -> Sampling | None:
    return Sampling(spec.cot_temperature, spec.seed) if spec.cot_temperature else None


def branches(items: list[Item]) -> list[Item]:
    """Exact transitions: each item once per possible round-0 answer, forced."""
    return [replace(it, uid=f"{it.uid}>{j}", meta={**it.meta, "branch": j, "branch_of": it.uid,
                                                    "base_uid": it.meta.get("base_uid", it.uid)})
            for it in items for j in range(len(it.candidates))]  # fmt: skip


def jobs(prep: Prepared, critic_backend=None) -> list[Job]:
    """One job per readout (they share the items), and the branch job for exact transitions."""
    parse = prep.kit.benchmark.parse
    extra = []
    if prep.spec.exact_transitions:
        plain = [it for it in prep.items if not it.meta.get("sample")]
        extra = [Job(prep.spec.benchmark, prep.conditions, branches(plain), 1, prep.library,
                     prep.kit.family, readout=BRANCH, parser=parse,
                     system=prep.spec.system_prompt)]  # fmt: skip
    return [
        Job(prep.spec.benchmark, prep.conditions, prep.items, prep.spec.rounds, prep.library,
            prep.kit.family, readout=r, parser=parse, sampling=_sampling(prep.spec),
            critic=critic_backend, critic_name=prep.critic.resolved.name if prep.critic else "",
            system=prep.spec.system_prompt)
        for r in prep.spec.readout
    ] + extra  # fmt: skip


def registered_items(prep: Prepared) -> list[Item]:
    items = list(prep.items)
    if prep.spec.exact_transitions:
        items += branches([it for it in prep.items if not it.meta.get("sample")])
    return items


def manifest(prep: Prepared) -> dict:
    spec, family = prep.spec, prep.kit.family
    sampling = _sampling(spec)
    return {
        "selfcorrect_version": __version__,
        "benchmark": spec.benchmark,
        "conditions": {
            c.name: {
                "hash": c.version_hash(family),
                "label": c.label,
                "provenance": c.provenance_for(family)[0],
                "source": c.provenance_for(family)[1],
            }  # fmt: skip
            for c in prep.conditions
        },
        "library_version": prep.library.version,
        "library_sha256": prep.library.source_hash,
        "data_sha256": data_hashes(),
        "hardware": hardware(),
        "n_items": prep.n_base,
        "n_asked": len(prep.items),  # items x option orders
        "permute": spec.permute,
        "counterfactual": spec.counterfactual if spec.benchmark == "law" else None,
        "items_sha256": hashlib.sha256("\n".join(i.uid for i in prep.items).encode()).hexdigest(),
        "categories": list(spec.categories) or "all",
        "limit": spec.limit,
        "seed": spec.seed,
        "rounds": spec.rounds,
        "readouts": list(spec.readout),
        "system_prompt": spec.system_prompt,
        "backend": spec.backend,
        "critic": spec.critic,
        "reasoning_sampling": None if sampling is None else vars(sampling),
        "reasoning_samples": spec.cot_samples,
        "argv": sys.argv,
        "process": process_info(),  # a later command can tell a killed run from a running one
        "spec": spec.to_manifest(),
        "rules": rules_record(spec.rules),  # fixed before this run's first answer
        "models": {
            m.label: {"sha256": m.resolved.sha256, **_model_info(m, prep.options)}
            for m in prep.models
        },  # fmt: skip
    }


def rules_record(path) -> dict:
    rules, digest = load_rules(path)
    return {"path": str(path or default_rules_path()), "sha256": digest,
            "version": rules.version, "logic": RULES_LOGIC}  # fmt: skip


def _model_info(m: ModelRun, options: LoadOptions) -> dict:
    res = m.resolved
    where = res.meta["base_url"] if res.source == "openai" else str(res.path)
    info = {"source": res.source, "path": where, **res.meta}
    # the arithmetic moves the answers: a store keeps answers of another one apart (a served
    # model's is its server's, unknown here)
    if m.backend == "transformers":
        head = options.dtype if options.head_dtype == "model" else options.head_dtype
        info |= dict(zip(ARITHMETIC_KEYS, (options.dtype, head), strict=True))
    elif m.backend == "llamacpp":  # the GGUF's own types; llama.cpp's logits are fp32
        info |= dict(zip(ARITHMETIC_KEYS, ("gguf", "float32"), strict=True))
    return info


def registration(prep: Prepared) -> tuple[list, list]:
    """What a run stores about its conditions (name, hash, spec) and models (name, sha256,
    info): each checked against what the store holds before the run's first answer."""
    family = prep.kit.family
    conds = [
        (c.name, c.version_hash(family),
         {"label": c.label, "provenance": c.provenance_for(family)[0],
          "source": c.provenance_for(family)[1],
          "steps": step_specs(c.steps[family])})
        for c in prep.conditions
    ]  # fmt: skip
    if prep.spec.rounds > 0:
        critic = prep.critic and (prep.critic.resolved.name, prep.critic.resolved.sha256)
        conds += prep.library.round_entries(critic or None)
    models = [(m.label, m.resolved.sha256, _model_info(m, prep.options)) for m in prep.models]
    return conds, models


def register(store: Store, prep: Prepared, man: dict) -> str:
    """The run, its items, conditions and models in one transaction."""
    conds, models = registration(prep)
    items = registered_items(prep)
    table = prep.kit.benchmark.item_table(items)
    if prep.spec.exact_transitions:  # which answer a branch forces, and on which item
        table["branch"] = [it.meta.get("branch", -1) for it in items]
        table["branch_of"] = [it.meta.get("branch_of", "") for it in items]
    return store.register_run(man, prep.spec.benchmark, table, conds, models)


def _run_model(store, run_id, prep, m: ModelRun, job_list, man, bar, critic) -> None:
    """Load one model (only when it has work left) and run every job through it."""
    entry = man["models"][m.label]
    pending = sum(count_pending(store, m.label, j) for j in job_list)
    entry["pending_at_start"] = pending
    if pending == 0:
        return
    task = bar.add_task(f"loading {m.label}", total=pending)
    t0 = time.perf_counter()
    engine = backends.load_backend(m.backend, m.resolved, prep.options)
    needs_chat = [c.name for c in prep.conditions if c.requires_chat]
    if needs_chat and not engine.chat:
        raise SelfCorrectError(
            f"condition '{needs_chat[0]}' needs a chat template; model '{m.resolved.name}' has none"
        )
    faults.point("loaded")
    entry["backend"] = engine.info
    # what the model is shown around a question: the system text its template adds, or not
    probe = Conversation((("user", "<question>"),), "<prefill>", prep.spec.system_prompt)
    entry["prompt_probe"] = engine.render(probe)
    entry["load_s"] = round(time.perf_counter() - t0, 2)
    bar.update(task, description=m.label)
    entry["condition_s"] = {}
    hidden = _hidden_writer(prep, engine, m, run_id, entry, pending)
    for job in job_list:
        entry["condition_s"][job.readout] = execute(
            store, run_id, m.label, engine, job, prep.spec.batch_size,
            on_progress=lambda n, task=task: bar.advance(task, n), hidden=hidden,
        )  # fmt: skip


def _hidden_writer(prep: Prepared, engine, m: ModelRun, run_id: str, entry: dict, pending: int):
    """With --save-hidden: the layers to keep, their size said before any answer, a writer."""
    if not prep.spec.save_hidden:
        return None
    why = getattr(engine, "hidden_support", lambda: f"the {engine.name} backend keeps none")()
    if why:
        raise SelfCorrectError(f"--save-hidden: no hidden states from {m.label}: {why}")
    try:
        engine.capture_layers = parse_layers(prep.spec.save_hidden, engine.n_hidden_states)
    except ValueError as exc:
        raise SelfCorrectError(f"--save-hidden: {exc}") from None
    size = estimate_bytes(pending, len(engine.capture_layers), engine.hidden_size)
    entry["hidden"] = {"layers": engine.capture_layers, "estimated_mb": round(size / 2**20, 1)}
    print(f"hidden states of {m.label}: {pending:,} answers x {len(engine.capture_layers)} "
          f"layers x {engine.hidden_size} = about {size / 2**20:,.1f} MB under "
          f"{prep.spec.out}/hidden", file=sys.stderr)  # fmt: skip
    return HiddenWriter(prep.spec.out, run_id, m.label)


def _run_on_ray(store, run_id, prep: Prepared, job_list, man, bar) -> None:
    """Every (model, condition) with answers still missing, as one Ray task each."""
    shards, pending = [], 0
    for m in prep.models:
        for cond in prep.conditions:
            n = sum(count_pending(store, m.label, replace(j, conditions=[cond]))
                    for j in job_list)  # fmt: skip
            if n:
                spec = prep.spec.shard(models=(m.resolved.name,), conditions=(cond.name,),
                                       ray=None)  # fmt: skip
                # what is stored goes with it: the shard resumes from it, so a later round
                # follows the stored earlier one instead of one it computed again
                keys = sorted({j.condition_key(cond) for j in job_list})
                stored = store.export_rows(m.label, prep.spec.benchmark, keys,
                                           sorted({j.readout for j in job_list}))  # fmt: skip
                shards.append(((m.resolved.name, cond.name), (spec, stored)))
                pending += n
    man["ray"] = {"address": prep.spec.ray, "shards": [list(key) for key, _ in shards]}
    if not shards:
        return
    task = bar.add_task(f"{len(shards)} shards on Ray", total=pending)
    labels = {m.resolved.name: m.label for m in prep.models}

    def done(key, shard_manifest, added):
        entry = man["models"][labels[key[0]]]
        got = shard_manifest["models"].get(labels[key[0]], {})
        entry.setdefault("shards", {})[key[1]] = {
            k: got.get(k) for k in ("backend", "load_s", "condition_s")
        } | {"answers_added": added, "hardware": shard_manifest.get("hardware")}
        bar.advance(task, added)

    distributed.run_shards(prep.spec.ray, shards, run_shard, store, run_id, done)


def execute_prepared(prep: Prepared, progress: bool = True) -> Outcome:
    """Register the run and do its work; the run's status and timings are stored whatever
    happens (finished, or interrupted: a rerun resumes)."""
    from selfcorrect.progress import progress_bar

    t_start = time.perf_counter()
    rss_scope = reset_peak_rss()
    store = Store(prep.spec.out)
    store.mark_dead_runs()
    man = manifest(prep)
    run_id = register(store, prep, man)
    status = "interrupted"
    try:
        critic = None
        if prep.critic is not None:
            critic = backends.load_backend(prep.critic.backend, prep.critic.resolved, prep.options)
            man["critic_model"] = {"name": prep.critic.resolved.name,
                                   "sha256": prep.critic.resolved.sha256}  # fmt: skip
        job_list = jobs(prep, critic)
        with progress_bar(progress) as bar:
            if prep.spec.ray:
                _run_on_ray(store, run_id, prep, job_list, man, bar)
            else:
                for m in prep.models:
                    _run_model(store, run_id, prep, m, job_list, man, bar, critic)
        status = "finished"
    finally:
        man["wall_s"] = round(time.perf_counter() - t_start, 2)
        man["peak_rss_mb"] = peak_rss_mb(rss_scope)
        man["peak_rss_scope"] = rss_scope
        store.update_run(run_id, man, status)
        store.close()
    return Outcome(Path(prep.spec.out), run_id, man)


def run(spec: RunSpec, progress: bool = True) -> Outcome:
    return execute_prepared(prepare(spec), progress)


def run_all(specs: list[RunSpec], progress: bool = True) -> list[Outcome]:
    """Several runs (a sweep plan): every one prepared (all models resolved, every text
    checked) before the first does any work, then run in turn."""
    cache: dict = {}
    prepared = [prepare(s, cache) for s in specs]
    check_plan(prepared)
    return [execute_prepared(p, progress) for p in prepared]


def check_plan(prepared: list[Prepared]) -> None:
    """Each run's condition texts and model weights against its store and the plan's other
    runs into it, before any work: a conflict in a late run would otherwise stop the plan
    after hours of the earlier ones."""
    seen: dict[tuple, tuple[str, int]] = {}
    stores: dict[Path, list] = {}
    for k, prep in enumerate(prepared):
        out = Path(prep.spec.out).resolve()
        conds, models = registration(prep)
        stores.setdefault(out, []).append((prep.spec.benchmark, conds, models))
        named = [(("condition", prep.spec.benchmark, n), d) for n, d, _ in conds]
        weights = [(("model", m), (sha, *(info.get(a) for a in ARITHMETIC_KEYS)))
                   for m, sha, info in models]  # fmt: skip
        for key, digest in named + weights:
            first = seen.setdefault((out, *key), (digest, k))
            if first[0] != digest:
                what = "texts" if key[0] == "condition" else "weights or arithmetic (dtype)"
                raise SelfCorrectError(
                    f"runs {first[1]} and {k} of the plan store {key[0]} '{key[-1]}' with "
                    f"different {what} in {out}"
                )
    for out, regs in stores.items():
        db = out / DB_NAME
        if db.is_file() and db.stat().st_size > 0:  # an empty file is a fresh store
            store = Store(out, read_only=True)
            try:
                for benchmark, conds, models in regs:
                    store.check_registration(benchmark, conds, models)
            finally:
                store.close()


def run_shard(spec: RunSpec, stored: dict | None = None) -> str:
    """Runs inside a Ray worker: one shard into a private store that starts from the rows
    already `stored` for it, returned as JSON rows."""
    with tempfile.TemporaryDirectory(prefix="selfcorrect-shard-") as d:
        if stored and (stored.get("answers") or stored.get("turns")):
            seed = Store(d)
            seed.merge_rows(stored, "stored")
            seed.close()
        res = run(spec.shard(out=Path(d), ray=None), progress=False)
        store = Store(d)
        rows = store.export_rows()
        store.close()
    return json.dumps({"rows": rows, "manifest": res.manifest})
