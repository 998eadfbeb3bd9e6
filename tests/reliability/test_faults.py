"""Faults injected into real runs: kill -9 at named points (mid-transaction, during model load
and report writing) and at a random moment, then a rerun that must end with exactly the answers
of an uninterrupted run and a sound database; a full disk; two runs writing one store; a store
on a read-only mount; a lock held by another process; a run whose process died."""

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcorrect import store as store_module
from selfcorrect.cli import app
from selfcorrect.store import Store

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "selfcorrect.cli"]
# the fake backend in a fresh process: `python -c FAKE_CLI run --model fake:a ...`
FAKE_CLI = [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv.pop(1)); "
            "import tests.fakes; from selfcorrect.cli import main; main()", str(ROOT)]  # fmt: skip
REAL = ["run", "--permute", "none", "--limit", "8", "--categories", "Age", "--conditions",
        "baseline,instruct", "--batch-size", "2", "--bootstrap", "20", "--quiet", "--dtype",
        "float32"]  # fmt: skip


def cli(args, fault=None, cmd=CLI, **kw):
    env = {**os.environ, "SELFCORRECT_FAULT": fault or ""}
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=900, env=env,
                          **kw)  # fmt: skip


def query(directory: Path, sql: str) -> list[tuple]:
    with closing(sqlite3.connect(directory / "results.sqlite")) as c:  # closed: unmountable
        return c.execute(sql).fetchall()


def answers(directory: Path) -> dict:
    rows = query(directory, "SELECT model, condition, uid, round, pred, logprobs FROM answers")
    return {r[:4]: (r[4], json.loads(r[5])) for r in rows}


def sound(directory: Path) -> bool:
    return query(directory, "PRAGMA integrity_check")[0][0] == "ok"


def statuses(directory: Path) -> list[str]:
    return [s for (s,) in query(directory, "SELECT status FROM runs ORDER BY started")]


def _stored(db: Path) -> int:
    """Answers in a store being written by another process: 0 until its file and its tables
    exist (the file appears a moment before the schema does)."""
    if not db.is_file():
        return 0
    try:
        return len(answers(db.parent))
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise


def same_answers(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key, (pred, lps) in want.items():
        assert got[key][0] == pred, key
        assert got[key][1] == pytest.approx(lps, abs=1e-4), key


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    r = cli([*REAL, "--out", str(out)])
    assert r.returncode == 0, r.stderr
    return answers(out)


@pytest.mark.slow
@pytest.mark.parametrize(
    "fault", ["kill@register", "kill@loaded", "kill@write:1", "kill@write:5", "kill@report"]
)
def test_kill_at_a_point_then_rerun_completes_exactly(fault, reference, tmp_path):
    r = cli([*REAL, "--out", str(tmp_path)], fault=fault)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr[-500:])
    if (tmp_path / "results.sqlite").is_file():
        assert sound(tmp_path)
        assert len(answers(tmp_path)) <= len(reference)
    r = cli([*REAL, "--out", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    same_answers(answers(tmp_path), reference)
    assert sound(tmp_path)
    runs = statuses(tmp_path)
    assert runs[-1] == "finished" and "running" not in runs  # the killed run is marked
    assert (tmp_path / "report" / "report.html").stat().st_size > 1000


@pytest.mark.slow
def test_kill_at_a_random_moment_then_rerun_completes_exactly(reference, tmp_path):
    rng = random.Random(7)
    proc = subprocess.Popen([*CLI, *REAL, "--out", str(tmp_path)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    db = tmp_path / "results.sqlite"
    deadline = time.time() + 600
    while time.time() < deadline and _stored(db) < 2:
        time.sleep(0.05)
    time.sleep(rng.uniform(0.0, 1.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert sound(tmp_path)
    r = cli([*REAL, "--out", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    same_answers(answers(tmp_path), reference)
    assert sound(tmp_path)


FAKE_RUN = ["run", "--permute", "none", "--model", "fake:a", "--limit", "264", "--conditions",
            "baseline,instruct", "--batch-size", "8", "--bootstrap", "0", "--quiet"]  # fmt: skip


def test_simulated_full_disk_keeps_stored_answers(tmp_path):
    r = cli([*FAKE_RUN, "--out", str(tmp_path)], fault="disk_full@write:4", cmd=FAKE_CLI)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: disk full") and "kept" in r.stderr
    assert len(answers(tmp_path)) == 3 * 8 and sound(tmp_path)
    r = cli([*FAKE_RUN, "--out", str(tmp_path)], cmd=FAKE_CLI)
    assert r.returncode == 0, r.stderr
    assert len(answers(tmp_path)) == 2 * 264 and sound(tmp_path)


def test_sigterm_stops_like_ctrl_c_and_records_the_run(tmp_path):
    """SIGTERM (a job scheduler, `timeout`) inside a store transaction: that batch is rolled
    back, the run is recorded as interrupted with its wall time and peak memory, exit 130;
    the same command resumes."""
    r = cli([*FAKE_RUN, "--out", str(tmp_path)], fault="term@write:4", cmd=FAKE_CLI)
    assert r.returncode == 130 and "interrupted" in r.stderr, (r.returncode, r.stderr[-300:])
    assert len(answers(tmp_path)) == 3 * 8 and sound(tmp_path)
    ((status, manifest),) = query(tmp_path, "SELECT status, manifest FROM runs")
    assert status == "interrupted" and json.loads(manifest)["wall_s"] > 0
    r = cli([*FAKE_RUN, "--out", str(tmp_path)], cmd=FAKE_CLI)
    assert r.returncode == 0, r.stderr
    assert len(answers(tmp_path)) == 2 * 264 and sound(tmp_path)


def _mount(*args) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


def test_real_full_disk_on_a_small_tmpfs(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if not _mount("-t", "tmpfs", "-o", "size=700k", "tmpfs", str(disk)):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        out = disk / "res"
        r = cli([*FAKE_RUN, "--out", str(out), "--limit", "600"], cmd=FAKE_CLI)
        assert r.returncode == 2, r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert "disk full" in r.stderr or "disk is full" in r.stderr, r.stderr
        kept = len(answers(out))
        assert 0 < kept < 2 * 600 and sound(out)
        assert _mount("-o", "remount,size=16m", str(disk))
        r = cli([*FAKE_RUN, "--out", str(out), "--limit", "600"], cmd=FAKE_CLI)
        assert r.returncode == 0, r.stderr
        assert len(answers(out)) == 2 * 600 and sound(out)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_two_runs_write_one_store_at_once(tmp_path):
    common = [*FAKE_RUN, "--out", str(tmp_path), "--batch-size", "2"]
    procs = [subprocess.Popen([*FAKE_CLI, *common, "--conditions", c],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for c in ("baseline,s2", "instruct,s3")]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1][-300:] for o in outs]
    got = answers(tmp_path)
    assert len(got) == 4 * 264 and {k[1] for k in got} == {"baseline", "s2", "instruct", "s3"}
    assert sound(tmp_path) and statuses(tmp_path) == ["finished", "finished"]


def test_store_on_a_read_only_mount_is_reported(tmp_path):
    src, ro = tmp_path / "src", tmp_path / "ro"
    r = cli([*FAKE_RUN, "--out", str(src), "--limit", "24"], cmd=FAKE_CLI)
    assert r.returncode == 0, r.stderr
    ro.mkdir()
    if not (_mount("--bind", str(src), str(ro)) and _mount("-o", "remount,bind,ro", str(ro))):
        subprocess.run(["umount", str(ro)], capture_output=True)
        pytest.skip("cannot make a read-only bind mount here (needs root)")
    try:
        r = cli(["report", str(ro), "--bootstrap", "0", "--out", str(tmp_path / "rep")],
                cmd=FAKE_CLI)  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "rep" / "bbq" / "summary.csv").is_file()
        r = cli(["report", str(ro), "--bootstrap", "0"], cmd=FAKE_CLI)  # into the mount: refused
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
        assert "Read-only file system" in r.stderr and "Traceback" not in r.stderr
        r = cli([*FAKE_RUN, "--out", str(ro), "--limit", "30"], cmd=FAKE_CLI)  # writing: refused
        assert r.returncode == 2 and "read-only" in r.stderr.lower(), r.stderr
    finally:
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)


def test_reading_beside_a_writer_and_waiting_on_a_lock(tmp_path, monkeypatch):
    from tests import fakes  # noqa: F401

    runner = CliRunner()
    r = runner.invoke(app, [*FAKE_RUN[:-1], "--out", str(tmp_path), "--limit", "24"])
    assert r.exit_code == 0, r.output
    writer = sqlite3.connect(tmp_path / "results.sqlite")
    writer.execute("BEGIN IMMEDIATE")  # another process in the middle of a write
    writer.execute("DELETE FROM answers")
    try:
        r = runner.invoke(app, ["report", str(tmp_path), "--bootstrap", "0"])
        assert r.exit_code == 0, r.output  # readers do not wait for writers
        monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 1)
        r = runner.invoke(app, [*FAKE_RUN[:-1], "--out", str(tmp_path), "--limit", "30"])
        assert r.exit_code == 2 and "is locked by another process" in r.output, r.output
        assert "kept" in r.output and len(r.output.strip().splitlines()) == 1
    finally:
        writer.rollback()
        writer.close()
    assert len(answers(tmp_path)) == 2 * 24


def test_a_run_whose_process_died_reads_as_interrupted(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    s = Store(tmp_path)
    from selfcorrect.manifest import process_info

    info = process_info() | {"pid": dead.pid}
    s.start_run({"process": info})
    s.start_run({"process": process_info()})  # this process: alive
    assert [r["status"] for r in s.runs()] == ["interrupted", "running"]
    assert s.mark_dead_runs() == 1
    s.close()
    assert statuses(tmp_path) == ["interrupted", "running"]
