"""Ray sharding: a real local Ray cluster (2 workers) runs a 2-model x 2-condition plan; the
merged store equals a single-process run's; merging is idempotent; a failing shard is named
and the rest are kept."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from selfcorrect import api
from selfcorrect.backends.transformers.gguf_cache import dequantised_copy
from selfcorrect.errors import SelfCorrectError
from selfcorrect.registry import resolve
from selfcorrect.runner import run_shard
from selfcorrect.spec import RunSpec
from selfcorrect.store import Store

pytestmark = [pytest.mark.slow, pytest.mark.ray]
MODEL = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    pytest.importorskip("ray")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = Path(sys.executable).parent / "ray"
    temp = tmp_path_factory.mktemp("ray")
    start = [str(ray_bin), "start", "--head", "--port", str(port), "--num-cpus", "2",
             "--include-dashboard=false", "--disable-usage-stats",
             f"--temp-dir={temp}"]  # fmt: skip
    subprocess.run(start, check=True, capture_output=True, timeout=120)
    yield f"127.0.0.1:{port}"
    import ray

    ray.shutdown()
    subprocess.run([str(ray_bin), "stop", "--force"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def second_model(tmp_path_factory):
    """Another model identity: SmolLM2 as a local Hugging Face folder."""
    src = dequantised_copy(resolve(MODEL), "bfloat16")
    dst = tmp_path_factory.mktemp("models") / "smollm2-hf"
    shutil.copytree(src, dst)
    return str(dst)


def _answers(directory) -> dict:
    store = Store(directory)
    rows = store.conn.execute(
        "SELECT model, condition, uid, round, pred, logprobs FROM answers"
    ).fetchall()
    store.close()
    return {r[:4]: (r[4], json.loads(r[5])) for r in rows}


COMMON = dict(
    conditions="baseline,instruct",
    limit=8,
    dtype="float32",
    bootstrap=0,
    progress=False,
    permute="none",
)


def test_two_worker_ray_run_equals_single_process(ray_cluster, second_model, tmp_path):
    models = [MODEL, second_model]
    res = api.run(models, out=tmp_path / "ray", ray=ray_cluster, **COMMON)
    api.run(models, out=tmp_path / "single", **COMMON)
    sharded, single = _answers(tmp_path / "ray"), _answers(tmp_path / "single")
    assert len(sharded) == len(single) == 2 * 2 * 8
    assert sharded.keys() == single.keys()
    for key, (pred, lps) in single.items():
        assert sharded[key][0] == pred
        assert sharded[key][1] == pytest.approx(lps, abs=1e-3)
    assert len(res.manifest["ray"]["shards"]) == 4
    # rerunning submits nothing: every shard is complete
    again = api.run(models, out=tmp_path / "ray", ray=ray_cluster, **COMMON)
    assert again.manifest["ray"]["shards"] == []


def test_merging_a_shard_twice_counts_it_once(tmp_path):
    spec = RunSpec.build(
        models=MODEL, conditions="baseline", limit=4, out=tmp_path / "unused", permute="none"
    )
    rows = json.loads(run_shard(spec))["rows"]
    store = Store(tmp_path)
    assert store.merge_rows(rows, "run-1") == 4
    assert store.merge_rows(rows, "run-2") == 0  # a duplicate submission
    assert store.conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 4
    store.close()


def test_failed_shard_is_named_and_the_rest_kept(ray_cluster, tmp_path):
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama"}')
    (broken / "model.safetensors").write_bytes(b"not weights")
    models = [MODEL, str(broken)]
    out = tmp_path / "out"
    with pytest.raises(SelfCorrectError, match=r"1 of 2 shards failed.*broken-model.*cannot load"):
        api.run(models, out=out, ray=ray_cluster, conditions="baseline", limit=4, permute="none",
                bootstrap=0, progress=False, write_report=False)  # fmt: skip
    kept = _answers(out)
    assert {k[0] for k in kept} == {MODEL} and len(kept) == 4
    # a rerun submits only the failed shard
    with pytest.raises(SelfCorrectError, match="broken-model"):
        api.run(models, out=out, ray=ray_cluster, conditions="baseline", limit=4, permute="none",
                bootstrap=0, progress=False, write_report=False)  # fmt: skip
    store = Store(out)
    last = store.runs()[-1]
    store.close()
    assert last["manifest"]["ray"]["shards"] == [[str(broken), "baseline"]]


def _shard_workers() -> list[int]:
    """PIDs of Ray workers running a shard right now (Ray names them after the task)."""
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if b"ray::run_shard" in cmd:
                pids.append(int(d.name))
    return pids


def test_worker_killed_mid_shard_is_retried_and_nothing_lost(ray_cluster, tmp_path):
    import os
    import signal
    import threading
    import time

    killed = []

    def killer():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            pids = _shard_workers()
            if pids:
                time.sleep(1.0)  # let it get into the shard's work
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.2)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    res = api.run(MODEL, out=tmp_path, ray=ray_cluster, conditions="baseline,instruct",
                  limit=8, bootstrap=0, progress=False, write_report=False,
                  permute="none")  # fmt: skip
    thread.join(5)
    assert killed, "no shard worker was seen running"
    got = _answers(tmp_path)
    assert len(got) == 2 * 8  # every answer once: the killed shard ran again, nothing doubled
    assert sum(s["answers_added"] for s in res.manifest["models"][MODEL]["shards"].values()) == 16
