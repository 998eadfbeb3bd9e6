import sqlite3

import pandas as pd
import pytest

from selfcorrect.errors import SelfCorrectError
from selfcorrect.store import Answer, Store


def answer(uid, rnd=0, pred=1):
    return Answer(
        "m",
        "bbq",
        "baseline",
        "h1",
        "logprob",
        uid,
        rnd,
        "prompt <b>",
        (" (a)", " (b)"),
        (-2.0, -1.0),
        (0.27, 0.73),
        pred,
        "ok",
    )


def test_write_is_atomic_and_idempotent(tmp_path):
    s = Store(tmp_path)
    run = s.start_run({"x": 1})
    s.write(run, answers=[answer("a"), answer("b")])
    s.write(run, answers=[answer("a", pred=0)])  # rewriting a key replaces, never duplicates
    assert s.done_answers("m", "bbq", "baseline", "logprob") == {
        ("a", 0): (0, None),
        ("b", 0): (1, None),
    }
    with pytest.raises(sqlite3.IntegrityError):  # a bad row rolls back its whole batch
        s.write(run, answers=[answer("c"), answer(None)])
    assert ("c", 0) not in s.done_answers("m", "bbq", "baseline", "logprob")
    s.close()
    again = Store(tmp_path)
    assert len(again.done_answers("m", "bbq", "baseline", "logprob")) == 2
    assert again.runs()[0]["manifest"] == {"x": 1}


def test_a_model_directory_with_other_config_files_is_refused(tmp_path):
    s = Store(tmp_path)
    s.register_model("old", "aaa", {"source": "hf-dir"})  # a store from before the hash
    s.register_model("old", "aaa", {"config_sha256": "c1"})  # cannot check: takes it
    with pytest.raises(SelfCorrectError, match="other config, tokenizer or chat template"):
        s.register_model("old", "aaa", {"config_sha256": "c2"})
    items = pd.DataFrame({"uid": ["Age:1"], "category": ["Age"]})
    with pytest.raises(SelfCorrectError, match="chat template"):
        s.register_run({}, "bbq", items, [], [("old", "aaa", {"config_sha256": "c2"})])
    s.register_model("old", "aaa", {"config_sha256": "c1", "k": 1})  # the same files: fine


def test_answers_computed_in_another_dtype_are_refused(tmp_path):
    s = Store(tmp_path)
    s.register_model("m", "aaa", {"config_sha256": "c1"})  # a store from before: takes it
    s.register_model("m", "aaa", {"dtype": "bfloat16", "head_dtype": "bfloat16"})
    for dtype, head in (("bfloat16", "float32"), ("float32", "float32")):
        with pytest.raises(SelfCorrectError, match=f"bfloat16/bfloat16 .*now {dtype}/{head}"):
            s.register_model("m", "aaa", {"dtype": dtype, "head_dtype": head})
    s.register_model("m", "aaa", {"dtype": "bfloat16", "head_dtype": "bfloat16", "k": 1})
    s.register_model("m", "aaa", {"k": 2})  # a process of older code records none: kept
    with pytest.raises(SelfCorrectError, match="now float32/float32"):
        s.register_model("m", "aaa", {"dtype": "float32", "head_dtype": "float32"})


def test_identity_checks_and_registration_in_one_transaction(tmp_path):
    items = pd.DataFrame({"uid": ["Age:1"], "category": ["Age"]})
    s = Store(tmp_path)
    s.register_run({"n": 1}, "bbq", items, [("baseline", "h1", {})], [("m", "aaa", {})])
    s.register_model("m", "aaa", {"k": 1})
    with pytest.raises(SelfCorrectError, match="other weights"):
        s.register_model("m", "bbb", {})
    more = pd.DataFrame({"uid": ["Age:2"], "category": ["Age"]})
    with pytest.raises(SelfCorrectError, match="changed since results were stored"):
        s.register_run({"n": 2}, "bbq", more, [("baseline", "h2", {})], [])
    with pytest.raises(SelfCorrectError, match="other weights"):
        s.register_run({"n": 3}, "bbq", more, [], [("m", "ccc", {})])
    # a refused registration writes nothing: no run, no items
    assert [r["manifest"] for r in s.runs()] == [{"n": 1}]
    assert s.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == 1
    assert s.models()["m"] == {"sha256": "aaa", "k": 1}


def test_unwritable_and_missing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SelfCorrectError, match="cannot write results directory"):
        Store(blocker / "sub")
    with pytest.raises(SelfCorrectError, match="no results database"):
        Store(tmp_path / "empty", create=False)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(SelfCorrectError, match="is damaged"):
        Store(bad)


def test_a_failed_creation_leaves_a_fresh_file(tmp_path, monkeypatch):
    """The schema is one transaction: a creation that fails half-way (here its last statement)
    leaves no half-made store that the next open would call damaged."""
    import selfcorrect.store as store_mod

    good = store_mod._SCHEMA
    monkeypatch.setattr(store_mod, "_SCHEMA", good + "CREATE TABLE broken (;")
    with pytest.raises(SelfCorrectError):
        Store(tmp_path)
    with sqlite3.connect(tmp_path / store_mod.DB_NAME) as c:
        assert c.execute("SELECT name FROM sqlite_master").fetchall() == []
    monkeypatch.setattr(store_mod, "_SCHEMA", good)
    s = Store(tmp_path)
    assert s.runs() == []
    assert s.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    s.close()


def test_an_upgrade_that_fails_half_way_changes_nothing(tmp_path, monkeypatch):
    """An older store's upgrade is one transaction: sqlite3 commits each ALTER TABLE on its own
    unless told otherwise, and a failure (or kill) after one left a store no open could migrate."""
    import selfcorrect.store as store_mod

    Store(tmp_path).close()
    with sqlite3.connect(tmp_path / store_mod.DB_NAME) as c:  # a schema-1 store
        c.execute("ALTER TABLE answers DROP COLUMN n_tokens")
        c.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    good = store_mod.MIGRATIONS
    monkeypatch.setattr(store_mod, "MIGRATIONS",
                        {"1": (*good["1"], "ALTER TABLE nowhere ADD COLUMN x")})  # fmt: skip
    with pytest.raises(SelfCorrectError):
        Store(tmp_path)

    def state():
        with sqlite3.connect(tmp_path / store_mod.DB_NAME) as c:
            cols = [r[1] for r in c.execute("PRAGMA table_info(answers)")]
            version = c.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        return "n_tokens" in cols, version[0]

    assert state() == (False, "1")
    monkeypatch.setattr(store_mod, "MIGRATIONS", good)
    Store(tmp_path).close()
    assert state() == (True, store_mod.SCHEMA_VERSION)


def test_a_read_only_open_never_reads_a_store_without_its_log(tmp_path, monkeypatch):
    """Where mode=ro fails (a WAL store in a place this process cannot write), the fallback
    (immutable) would ignore the write-ahead log: rows still in it are refused, not dropped."""
    import selfcorrect.store as store_mod

    writer = Store(tmp_path)
    run = writer.start_run({"x": 1})
    writer.write(run, answers=[answer("a"), answer("b")])  # in the log: no checkpoint yet
    assert (tmp_path / (store_mod.DB_NAME + "-wal")).stat().st_size > 0
    real = sqlite3.connect

    def no_ro(target, *args, **kw):
        if "mode=ro" in str(target):
            raise sqlite3.OperationalError("unable to open database file")
        return real(target, *args, **kw)

    monkeypatch.setattr(store_mod.sqlite3, "connect", no_ro)
    with pytest.raises(SelfCorrectError, match="read-only open here cannot see"):
        Store(tmp_path, read_only=True)
    writer.close()  # its checkpoint empties the log: now the file holds every row
    reader = Store(tmp_path, read_only=True)
    assert len(reader.done_answers("m", "bbq", "baseline", "logprob")) == 2
    reader.close()


def test_export_rows_of_one_model_benchmark_conditions_and_readouts(tmp_path):
    """What a shard resumes from: its own rows only (model, benchmark, condition keys,
    readouts), and the model's registration."""
    from dataclasses import replace

    s = Store(tmp_path)
    run = s.start_run({})
    s.register_model("m", "aaa", {})
    rows = [
        answer("a"),
        replace(answer("b"), benchmark="law"),
        replace(answer("c"), readout="cloze"),
        replace(answer("d"), condition="baseline+system:none"),
        replace(answer("e"), model="n"),
    ]
    s.write(run, answers=rows)
    got = s.export_rows("m", "bbq", ["baseline", "baseline+system:none"], ["logprob"])
    assert sorted(r["uid"] for r in got["answers"]) == ["a", "d"]
    assert [r["model"] for r in got["models"]] == ["m"]
    assert len(s.export_rows()["answers"]) == 5
    s.close()


def test_an_upgrade_another_process_finished_first_is_not_an_error(tmp_path, monkeypatch):
    """Two commands open a schema-1 store at once: the second reads version 1, waits for the
    first's upgrade, then finds its columns there; it reads the version again, not fails."""
    Store(tmp_path).close()  # upgraded already (by "the other process")
    real, calls = Store._check_schema, []

    def stale_first_look(self):
        real(self)
        if not calls:
            self.version = "1"
        calls.append(self.version)

    monkeypatch.setattr(Store, "_check_schema", stale_first_look)
    Store(tmp_path).close()
    assert calls[0] == "1" and calls[-1] != "1"
