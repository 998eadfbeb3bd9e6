"""Sharding a plan over a Ray cluster: one task per (model, condition) shard, each loading its
model once and running the ordinary single-process path into a private store; the driver merges
every shard's rows into the one results store as it finishes. Merging is idempotent (rows
already stored are kept), so a shard submitted twice is counted once, and a rerun of the same
command submits only the shards still missing. Ray retries a task whose worker died."""

from __future__ import annotations

import json
from collections.abc import Callable

from selfcorrect.errors import SelfCorrectError
from selfcorrect.store import Store

TASK_RETRIES = 2  # Ray re-executes a task whose worker process died, this many times


def run_shard(run_kwargs: dict) -> str:
    """Runs inside a Ray worker: one shard through `api.run`, returned as JSON rows."""
    import tempfile

    from selfcorrect import api

    with tempfile.TemporaryDirectory(prefix="selfcorrect-shard-") as d:
        res = api.run(**run_kwargs, out=d, progress=False, write_report=False)
        store = Store(d)
        rows = store.export_rows()
        store.close()
    return json.dumps({"rows": rows, "manifest": res.manifest})


def _connect(address: str):
    try:
        import ray
    except ImportError:
        raise SelfCorrectError("--ray needs Ray: pip install 'selfcorrect[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(
                address=None if address == "local" else address,
                include_dashboard=False,
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SelfCorrectError(
                f"cannot connect to the Ray cluster at '{address}': {exc}"
            ) from None
    return ray


def run_shards(
    address: str,
    shards: list[tuple[str, str]],
    run_kwargs: dict,
    store: Store,
    run_id: str,
    on_done: Callable[[tuple[str, str], dict, int], None],
) -> None:
    """Submit every (model, condition) shard; merge each one as it finishes; after all have
    ended, raise one error naming the shards that failed (the others stay stored)."""
    ray = _connect(address)
    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(run_shard)
    refs = {
        task.remote({**run_kwargs, "models": model, "conditions": cond}): (model, cond)
        for model, cond in shards
    }
    failures = []
    while refs:
        (ref,), _ = ray.wait(list(refs), num_returns=1)
        shard = refs.pop(ref)
        try:
            out = json.loads(ray.get(ref))
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            why = " ".join(str(cause).split())[:300] or type(cause).__name__
            failures.append(f"shard model={shard[0]} condition={shard[1]}: {why}")
            continue
        added = store.merge_rows(out["rows"], run_id)
        on_done(shard, out["manifest"], added)
    if failures:
        raise SelfCorrectError(
            f"{len(failures)} of {len(shards)} shards failed (the rest are stored; rerun the "
            f"same command to run only what is missing): " + "; ".join(failures)
        )
