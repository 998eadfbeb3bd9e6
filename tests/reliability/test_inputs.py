"""Every crafted bad input (cases.py) ends in one line on stderr, exit 2, no traceback, and
leaves the results store it names exactly as it was."""

import hashlib
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from selfcorrect import api
from selfcorrect.cli import app
from tests import fakes  # noqa: F401  (registers the fake backend)
from tests.reliability.cases import CASES, SOURCE, STORE


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("store")
    api.run("fake:a", conditions="baseline,instruct", limit=8, out=d, bootstrap=0,
            progress=False, write_report=False)  # fmt: skip
    SOURCE["db"] = d / "results.sqlite"
    return d


def content(db: Path) -> str:
    """Every row of every table."""
    h = hashlib.sha256()
    with sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True) as c:
        for (table,) in c.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY 1"):
            for row in c.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):  # noqa: S608
                h.update(repr(row).encode())
    return h.hexdigest()


def files(folder: Path) -> dict[str, str]:
    """Every file's bytes; SQLite's coordination files (-shm, and an empty -wal, which a
    read-only reader of a WAL database may create) are not content."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file() and not p.name.endswith("-shm")
            and not (p.name.endswith("-wal") and p.stat().st_size == 0)}  # fmt: skip


@pytest.mark.parametrize(("name", "make"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(name, make, store, tmp_path):
    args = [a.replace(STORE, str(store)) for a in make(tmp_path)]
    before, made = content(store / "results.sqlite"), files(tmp_path)
    result = CliRunner().invoke(app, args)
    text = result.output.strip()
    assert result.exit_code == 2, (name, text, result.exception)
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    assert "Traceback" not in text
    assert content(store / "results.sqlite") == before
    assert files(tmp_path) == made  # no input file (a foreign database, a plan) was touched
