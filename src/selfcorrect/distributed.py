"""Sharding a run over a Ray cluster: one task per shard (the runner makes one per model and
condition, each loading its model once), running the worker function it is handed into a
private store; the driver merges every shard's rows into the one results store as it finishes.
Merging is idempotent (rows already stored are kept), so a shard submitted twice is counted
once, and a rerun of the same command submits only the shards still missing. Ray retries a task
whose worker died. This module knows nothing of runs: it moves payloads and merges rows."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from typing import Any

from selfcorrect.errors import SelfCorrectError
from selfcorrect.store import Store

TASK_RETRIES = 2  # Ray re-executes a task whose worker process died, this many times


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
    shards: list[tuple[Hashable, Any]],
    worker: Callable[..., str],
    store: Store,
    run_id: str,
    on_done: Callable[[Any, dict, int], None],
) -> None:
    """Submit `worker(*payload)` for every (key, payload) shard; the worker returns JSON with
    `rows` (a store's export) and its `manifest`. Each shard is merged as it finishes; after
    all have ended, one error names the shards that failed (the others stay stored)."""
    ray = _connect(address)
    task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(worker)
    refs = {task.remote(*payload): key for key, payload in shards}
    failures = []
    while refs:
        (ref,), _ = ray.wait(list(refs), num_returns=1)
        key = refs.pop(ref)
        try:
            out = json.loads(ray.get(ref))
        except ray.exceptions.RayError as exc:
            cause = getattr(exc, "cause", None) or exc
            why = " ".join(str(cause).split())[:300] or type(cause).__name__
            failures.append(f"shard {_name(key)}: {why}")
            continue
        added = store.merge_rows(out["rows"], run_id)
        on_done(key, out["manifest"], added)
    if failures:
        raise SelfCorrectError(
            f"{len(failures)} of {len(shards)} shards failed (the rest are stored; rerun the "
            f"same command to run only what is missing): " + "; ".join(failures)
        )


def _name(key) -> str:
    if isinstance(key, tuple) and len(key) == 2:
        return f"model={key[0]} condition={key[1]}"
    return str(key)
