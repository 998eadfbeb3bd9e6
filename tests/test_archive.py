import json
import sqlite3

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from selfcorrect.archive import INDEX, export_store, restore_store
from selfcorrect.cli import app
from selfcorrect.errors import SelfCorrectError
from selfcorrect.hidden import HiddenWriter, load_hidden
from selfcorrect.store import Store
from tests.test_store import answer

TABLES = ("meta", "runs", "models", "conditions", "items", "turns", "answers")


def _rows(directory):
    conn = sqlite3.connect(directory / "results.sqlite")
    out = {t: sorted(map(repr, conn.execute(f"SELECT * FROM {t}"))) for t in TABLES}
    conn.close()
    return out


def _store(path, finish_first=True):
    """Two runs: the first finished, the second still running (as when a session ends)."""
    s = Store(path)
    items = pd.DataFrame({"uid": ["a", "b", "c"], "category": ["Age"] * 3})
    first = s.register_run({"n": 1}, "bbq", items, [("baseline", "h1", {"t": "x"})],
                           [("m", "aaa", {"k": 1})])  # fmt: skip
    s.write(first, answers=[answer("a"), answer("b", pred=0)],
            turns=[("m", "bbq", "baseline", "logprob", "a", 0, "p",
                    "unicode é ✓ \u2028 line \u0085 next \r\n end")])  # fmt: skip
    if finish_first:
        s.update_run(first, {"n": 1}, "complete")
    second = s.register_run({"n": 2}, "bbq", items, [("baseline", "h1", {"t": "x"})], [])
    s.write(second, answers=[answer("c", pred=None)])
    HiddenWriter(path, second, "m").write(
        [("m", "bbq", "baseline", "logprob", "c", 0)], np.ones((1, 2, 4)), [1, 2]
    )
    return s, first, second


def test_round_trip_keeps_every_row_and_the_running_run_comes_back_interrupted(tmp_path):
    s, first, second = _store(tmp_path / "a")
    s.close()
    done = export_store(tmp_path / "a", tmp_path / "arch")
    assert done["rows"]["answers"] == 3 and done["rows"]["turns"] == 1
    assert f"answers/{first}.jsonl.xz" in done["written"]
    added = restore_store(tmp_path / "arch", tmp_path / "b")
    assert added["answers"] == 3 and added["hidden files"] == 1
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert {t: a[t] for t in TABLES if t != "runs"} == {t: b[t] for t in TABLES if t != "runs"}
    runs = {r["run_id"]: r for r in Store(tmp_path / "b", read_only=True).runs()}
    assert runs[first]["status"] == "complete" and runs[second]["status"] == "interrupted"
    assert runs[first]["started"] == Store(tmp_path / "a").runs()[0]["started"]  # exact floats
    keys, states, layers = load_hidden(tmp_path / "b")
    assert list(keys["uid"]) == ["c"] and states.shape == (1, 2, 4) and layers == [1, 2]
    # restoring again adds nothing; the restored store is a store a run resumes
    assert restore_store(tmp_path / "arch", tmp_path / "b")["answers"] == 0


def test_export_rewrites_only_what_changed(tmp_path):
    s, first, second = _store(tmp_path / "a")
    export_store(tmp_path / "a", tmp_path / "arch")
    before = {p: p.read_bytes() for p in (tmp_path / "arch").rglob("*.xz")}
    again = export_store(tmp_path / "a", tmp_path / "arch")
    assert again["written"] == [] and again["unchanged"] == len(before) + 1  # + hidden file
    s.write(second, answers=[answer("d")])
    grown = export_store(tmp_path / "a", tmp_path / "arch")
    assert grown["written"] == [f"answers/{second}.jsonl.xz"]
    assert (tmp_path / "arch" / f"answers/{first}.jsonl.xz").read_bytes() == before[
        tmp_path / "arch" / f"answers/{first}.jsonl.xz"
    ]


def _answers(directory):
    return Store(directory).conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]


def test_damaged_or_foreign_archives_are_refused_and_change_nothing(tmp_path):
    s, first, _ = _store(tmp_path / "a")
    s.close()
    arch = tmp_path / "arch"
    export_store(tmp_path / "a", arch)
    with pytest.raises(SelfCorrectError, match="not a selfcorrect archive"):
        restore_store(tmp_path, tmp_path / "b")
    index = json.loads((arch / INDEX).read_text())
    good = (arch / INDEX).read_text()
    # a file whose bytes are not the indexed ones (the xz stream itself still valid)
    index["files"][f"answers/{first}.jsonl.xz"]["sha256"] = "0" * 64
    (arch / INDEX).write_text(json.dumps(index))
    with pytest.raises(SelfCorrectError, match="damaged .sha256"):
        restore_store(arch, tmp_path / "b")
    (arch / INDEX).write_text(good)
    # a damaged hidden-state file: refused before any row goes in
    h = next(arch.rglob("*.safetensors"))
    kept = h.read_bytes()
    h.write_bytes(kept[:100] + bytes([kept[100] ^ 1]) + kept[101:])
    with pytest.raises(SelfCorrectError, match="damaged"):
        restore_store(arch, tmp_path / "b")
    assert not (tmp_path / "b").exists() or _answers(tmp_path / "b") == 0
    h.write_bytes(kept)
    index = json.loads(good)
    index["files"]["../x.jsonl.xz"] = {"rows": 0, "sha256": "0"}
    (arch / INDEX).write_text(json.dumps(index))
    with pytest.raises(SelfCorrectError, match="leaves the archive"):
        restore_store(arch, tmp_path / "b")
    (arch / INDEX).write_text(good)
    other = Store(tmp_path / "c")
    other.register_model("m", "zzz", {})
    other.close()
    with pytest.raises(SelfCorrectError, match="other weights"):
        restore_store(arch, tmp_path / "c")
    assert _rows(tmp_path / "c")["answers"] == []


def test_a_restore_refuses_a_model_directory_with_other_config_files(tmp_path):
    s = Store(tmp_path / "a")
    s.register_model("m", "aaa", {"config_sha256": "c1"})
    s.close()
    export_store(tmp_path / "a", tmp_path / "arch")
    other = Store(tmp_path / "b")
    other.register_model("m", "aaa", {"config_sha256": "c2"})
    other.close()
    with pytest.raises(SelfCorrectError, match="chat template"):
        restore_store(tmp_path / "arch", tmp_path / "b")


def test_an_index_that_is_not_an_object_or_lists_no_files_is_refused(tmp_path):
    s, _, _ = _store(tmp_path / "a")
    s.close()
    arch = tmp_path / "arch"
    export_store(tmp_path / "a", arch)
    good = json.loads((arch / INDEX).read_text())
    for bad, match in (([], "not an archive index"), ({**good, "files": []}, "no file list")):
        (arch / INDEX).write_text(json.dumps(bad))
        with pytest.raises(SelfCorrectError, match=match):
            restore_store(arch, tmp_path / "b")


def test_export_into_the_store_itself_is_refused_and_keeps_its_hidden_states(tmp_path):
    s, _, _ = _store(tmp_path / "a")
    s.close()
    hidden = sorted((tmp_path / "a").rglob("*.safetensors"))
    assert hidden
    with pytest.raises(SelfCorrectError, match="not into itself"):
        export_store(tmp_path / "a", tmp_path / "a" / ".", hidden="none")
    assert all(p.is_file() for p in hidden)


def test_a_store_missing_archived_runs_cannot_shrink_the_archive(tmp_path):
    s, first, second = _store(tmp_path / "a")
    s.close()
    arch = tmp_path / "arch"
    export_store(tmp_path / "a", arch)
    fresh = Store(tmp_path / "new")  # a new machine that ran before restoring
    fresh.register_model("m", "aaa", {"k": 1})
    run = fresh.start_run({"n": 3})
    fresh.write(run, answers=[answer("z")])
    fresh.close()
    with pytest.raises(SelfCorrectError, match="restore the archive into the store first"):
        export_store(tmp_path / "new", arch)
    assert restore_store(arch, tmp_path / "b")["answers"] == 3  # the archive is untouched
    done = export_store(tmp_path / "new", arch, hidden="none", force=True)
    assert f"answers/{first}.jsonl.xz" in done["removed"] and not list(arch.rglob("*.safetensors"))
    (arch / "answers" / "x.jsonl.xz.tmp").write_bytes(b"half")  # a crash's leftover
    assert export_store(tmp_path / "new", arch, hidden="none")["removed"] == [
        "answers/x.jsonl.xz.tmp"
    ]


def test_export_reads_one_snapshot_beside_a_writer(tmp_path, monkeypatch):
    """A batch stored while the export runs is in all of its tables or in none."""
    import selfcorrect.archive as archive

    s, _, second = _store(tmp_path / "a")
    encode = archive._encode
    calls = []

    def writing_encode(cols, rows):
        if not calls:
            s.write(second, answers=[answer("late")])  # the writer commits between tables
        calls.append(1)
        return encode(cols, rows)

    monkeypatch.setattr(archive, "_encode", writing_encode)
    assert export_store(tmp_path / "a", tmp_path / "arch")["rows"]["answers"] == 3


def test_cli_export_and_restore(tmp_path):
    s, _, _ = _store(tmp_path / "a")
    s.close()
    runner = CliRunner()
    res = runner.invoke(app, ["export", str(tmp_path / "a"), str(tmp_path / "arch")])
    assert res.exit_code == 0, res.output
    assert "3 answers" in res.output
    res = runner.invoke(app, ["restore", str(tmp_path / "arch"), str(tmp_path / "b")])
    assert res.exit_code == 0 and "3 answers" in res.output and "1 hidden files" in res.output
    for which, n in (("none", 0), ("other-model", 0), ("m", 1)):
        res = runner.invoke(app, ["export", str(tmp_path / "a"), str(tmp_path / which),
                                  "--hidden", which])  # fmt: skip
        assert res.exit_code == 0, res.output
        assert len(list((tmp_path / which).rglob("*.safetensors"))) == n
    res = runner.invoke(app, ["restore", str(tmp_path / "nowhere"), str(tmp_path / "c")])
    assert res.exit_code == 2 and "not a selfcorrect archive" in res.output
