"""The results store: one SQLite database per results directory (WAL, one transaction per
batch), so a crash or Ctrl-C loses at most the batch in flight and never corrupts what is stored.
Plain JSON and SQL only: no pickles."""

from __future__ import annotations

import errno
import functools
import json
import sqlite3
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from selfcorrect import faults
from selfcorrect.errors import SelfCorrectError
from selfcorrect.manifest import process_gone
from selfcorrect.redact import scrub_data
from selfcorrect.registry import ARITHMETIC_KEYS, CONFIG_HASH_KEY

DB_NAME = "results.sqlite"
SCHEMA_VERSION = "2"  # 2: answers.n_tokens (tokens of each option)
MIGRATIONS = {"1": ("ALTER TABLE answers ADD COLUMN n_tokens TEXT",)}  # version -> to next
BUSY_TIMEOUT_S = 30  # how long a command waits for another process's write lock


def _new_run_id() -> str:
    """UTC time and a random suffix: run ids sort in time order on any machine (hidden-state
    files are read in that order)."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + uuid.uuid4().hex[:6]


def _dumps(manifest: dict) -> str:
    """A manifest as stored: no secret (keys, URL userinfo) survives."""
    return json.dumps(scrub_data(manifest), sort_keys=True)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, started REAL NOT NULL, finished REAL, status TEXT NOT NULL,
    manifest TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    model TEXT PRIMARY KEY, sha256 TEXT NOT NULL, info TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS conditions (
    benchmark TEXT NOT NULL, condition TEXT NOT NULL, hash TEXT NOT NULL, spec TEXT NOT NULL,
    PRIMARY KEY (benchmark, condition));
CREATE TABLE IF NOT EXISTS items (
    benchmark TEXT NOT NULL, uid TEXT NOT NULL, category TEXT NOT NULL, meta TEXT NOT NULL,
    PRIMARY KEY (benchmark, uid));
CREATE TABLE IF NOT EXISTS turns (
    model TEXT NOT NULL, benchmark TEXT NOT NULL, condition TEXT NOT NULL, readout TEXT NOT NULL,
    uid TEXT NOT NULL, step INTEGER NOT NULL, prompt TEXT NOT NULL, text TEXT NOT NULL,
    run_id TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, benchmark, condition, readout, uid, step));
CREATE TABLE IF NOT EXISTS answers (
    model TEXT NOT NULL, benchmark TEXT NOT NULL, condition TEXT NOT NULL,
    condition_hash TEXT NOT NULL, readout TEXT NOT NULL, uid TEXT NOT NULL,
    round INTEGER NOT NULL, prompt TEXT NOT NULL, candidates TEXT NOT NULL,
    logprobs TEXT, probs TEXT, pred INTEGER, parse_status TEXT NOT NULL, raw TEXT,
    run_id TEXT NOT NULL, created REAL NOT NULL, n_tokens TEXT,
    PRIMARY KEY (model, benchmark, condition, readout, uid, round));
"""


@dataclass(frozen=True)
class Answer:
    model: str
    benchmark: str
    condition: str
    condition_hash: str
    readout: str
    uid: str
    round: int
    prompt: str
    candidates: Sequence[str]
    logprobs: Sequence[float] | None
    probs: Sequence[float] | None
    pred: int | None  # None = unparseable
    parse_status: str
    raw: str | None = None
    n_tokens: Sequence[int] | None = None  # tokens of each candidate (for per-token scores)


ANSWER_COLUMNS = ("model", "benchmark", "condition", "condition_hash", "readout", "uid", "round",
                  "prompt", "candidates", "logprobs", "probs", "pred", "parse_status", "raw",
                  "run_id", "created", "n_tokens")  # fmt: skip
TURN_COLUMNS = ("model", "benchmark", "condition", "readout", "uid", "step", "prompt", "text",
                "run_id", "created")  # fmt: skip


TABLES = ("meta", "runs", "models", "conditions", "items", "turns", "answers")


def _guarded(fn):
    """SQLite and OS failures become one-line errors naming the store and saying what is kept
    (integrity errors are bugs, not user problems: they stay as they are)."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        try:
            return fn(self, *args, **kwargs)
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.Error, OSError) as exc:
            raise self.error(exc) from None

    return wrapper


class Store:
    """Opened to write (a run: created if missing) or, with read_only, to read (report,
    score: never changes the file, works on read-only files and beside a running writer)."""

    def __init__(self, directory: str | Path, create: bool = True, read_only: bool = False):
        self.dir = Path(directory)
        self.path = self.dir / DB_NAME
        self.read_only = read_only
        if (read_only or not create) and not self.path.is_file():
            raise SelfCorrectError(f"no results database in {self.dir} (expected {DB_NAME})")
        if read_only:
            self.conn = self._open_read()
        else:
            self.conn = self._open_write()
        self._check_schema()

    def _open_write(self) -> sqlite3.Connection:
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S)
            if not fresh:
                self.conn = conn
                self._check_schema()  # never turn someone else's database into a store
                self._migrate()
            # One transaction, written before WAL is on: a reader or a second writer finds
            # every table or none, and a creation that fails leaves an empty, fresh file.
            try:
                conn.executescript(
                    f"BEGIN; {_SCHEMA} INSERT OR IGNORE INTO meta VALUES "
                    f"('schema_version', '{SCHEMA_VERSION}'); COMMIT;"
                )
            except sqlite3.DatabaseError:
                conn.rollback()
                raise
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            return conn
        except OSError as exc:
            raise SelfCorrectError(
                f"cannot write results directory {self.dir}: {exc.strerror}"
            ) from None
        except sqlite3.DatabaseError as exc:
            raise self.error(exc) from None

    def _open_read(self) -> sqlite3.Connection:
        """mode=ro never writes; a WAL store in a read-only place cannot make its shared-memory
        file, so it is read as immutable (no writer can be running there). Immutable reads
        ignore the write-ahead log, so a store whose log still holds rows (its writer killed
        before a checkpoint) is refused rather than read without them."""
        uri = self.path.resolve().as_uri()
        last = None
        for flags in ("mode=ro", "immutable=1"):
            try:
                conn = sqlite3.connect(f"{uri}?{flags}", uri=True, timeout=BUSY_TIMEOUT_S)
                conn.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
                return conn
            except sqlite3.OperationalError as exc:
                last = exc
                if "locked" in str(exc).lower():  # a writer holds it: waiting was the answer
                    break
                wal = self.path.with_name(self.path.name + "-wal")
                if wal.is_file() and wal.stat().st_size > 0:
                    raise SelfCorrectError(
                        f"{self.path} keeps rows in {wal.name} that a read-only open here "
                        f"cannot see ({exc}): open it once where it can be written (copy the "
                        "directory) and read it there"
                    ) from None
            except sqlite3.DatabaseError as exc:
                raise self.error(exc) from None
        raise self.error(last) from None

    def _check_schema(self) -> None:
        """A selfcorrect store: every table, and the schema version this code reads."""
        try:
            names = {r[0] for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}  # fmt: skip
            if "meta" not in names:
                what = "an empty file" if not names else "a database of another program"
                raise SelfCorrectError(f"{self.path} is not a selfcorrect results store ({what})")
            missing = [t for t in TABLES if t not in names]
            if missing:
                raise SelfCorrectError(
                    f"results store {self.path} is damaged: table '{missing[0]}' is missing"
                )
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise self.error(exc) from None
        if row is None or (row[0] != SCHEMA_VERSION and row[0] not in MIGRATIONS):
            found = row[0] if row else "none"
            raise SelfCorrectError(
                f"{self.path} has schema {found}, this version reads {SCHEMA_VERSION}"
            )
        self.version = row[0]

    def _migrate(self) -> None:
        """An older store is brought up to this schema in one transaction (columns are only
        added: nothing stored changes); a read-only reader reads older stores as they are."""
        statements, version = [], self.version
        while version in MIGRATIONS:
            statements += MIGRATIONS[version]
            version = str(int(version) + 1)
        if not statements:
            return
        # One script inside BEGIN/COMMIT: sqlite3 would commit each ALTER TABLE on its own, and
        # a kill between an ALTER and the version update left a store no open could migrate.
        try:
            self.conn.executescript(
                "BEGIN IMMEDIATE; " + "; ".join(statements) + "; UPDATE meta SET value="
                f"'{version}' WHERE key='schema_version'; COMMIT;"
            )
        except sqlite3.DatabaseError:
            self.conn.rollback()
            self._check_schema()  # another process may have upgraded it since we looked
            if self.version != version:
                raise
        self.version = version

    def error(self, exc: BaseException) -> SelfCorrectError:
        msg = str(exc) or type(exc).__name__
        low = msg.lower()
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "disk is full" in low:
            return SelfCorrectError(
                f"disk full while writing {self.path}: the batch in flight was not stored, all "
                "earlier answers are kept; free space and rerun the same command to resume"
            )
        if "locked" in low or "busy" in low:
            return SelfCorrectError(
                f"results store {self.path} is locked by another process (waited "
                f"{BUSY_TIMEOUT_S} s); stored answers are kept: rerun when it is free"
            )
        if "malformed" in low or "not a database" in low or "corrupt" in low:
            return SelfCorrectError(
                f"results store {self.path} is damaged ({msg}); it was not changed: use a new "
                "--out directory, or restore a copy of the file"
            )
        if "readonly" in low or "read-only" in low:
            return SelfCorrectError(
                f"results store {self.path} is read-only ({msg}); stored answers are kept: "
                "write to another --out directory"
            )
        return SelfCorrectError(f"cannot use results store {self.path}: {msg}")

    def close(self) -> None:
        self.conn.close()

    # runs ----------------------------------------------------------------------------------
    @_guarded
    def start_run(self, manifest: dict) -> str:
        run_id = _new_run_id()
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs VALUES (?, ?, NULL, 'running', ?)",
                (run_id, time.time(), _dumps(manifest)),
            )
        return run_id

    @_guarded
    def update_run(self, run_id: str, manifest: dict, status: str) -> None:
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET manifest=?, status=?, finished=? WHERE run_id=?",
                (_dumps(manifest), status, time.time(), run_id),
            )

    @_guarded
    def runs(self) -> list[dict]:
        """Every run; one still marked running whose process is gone reads as interrupted."""
        rows = self.conn.execute(
            "SELECT run_id, started, finished, status, manifest FROM runs ORDER BY started"
        ).fetchall()
        out = []
        for run_id, started, finished, status, manifest in rows:
            manifest = json.loads(manifest)
            if status == "running" and process_gone(manifest.get("process")):
                status = "interrupted"
            out.append({"run_id": run_id, "started": started, "finished": finished,
                        "status": status, "manifest": manifest})  # fmt: skip
        return out

    @_guarded
    def mark_dead_runs(self) -> int:
        """Runs still marked running whose process is gone (killed) become interrupted."""
        dead = [r["run_id"] for r in self.runs() if r["status"] == "interrupted"]
        with self.conn:
            n = 0
            for run_id in dead:
                n += self.conn.execute(
                    "UPDATE runs SET status='interrupted' WHERE run_id=? AND status='running'",
                    (run_id,),
                ).rowcount
        return n

    # identity checks: results made with other weights or other texts never mix ---------------
    def _check_model(self, model: str, sha256: str, info: dict | None = None) -> None:
        row = self.conn.execute(
            "SELECT sha256, info FROM models WHERE model=?", (model,)
        ).fetchone()
        if not row:
            return
        if row[0] != sha256:
            raise SelfCorrectError(
                f"results in {self.dir} for model '{model}' were made with other weights "
                f"(sha256 {row[0][:12]}..., now {sha256[:12]}...); use a new --out directory"
            )
        # a model directory's config, tokenizer and chat template (registry.resolve); stores
        # written before this hash existed cannot be checked, and take it at their next run
        before, info = json.loads(row[1]), info or {}
        stored, now = before.get(CONFIG_HASH_KEY), info.get(CONFIG_HASH_KEY)
        if stored and now and stored != now:
            raise SelfCorrectError(
                f"results in {self.dir} for model '{model}' were made with other config, "
                f"tokenizer or chat template files (sha256 {stored[:12]}..., now {now[:12]}...); "
                "use a new --out directory"
            )
        # likewise its arithmetic (dtype, head dtype), where both runs recorded it
        stored, now = ([d.get(k) for k in ARITHMETIC_KEYS] for d in (before, info))
        if all(stored) and all(now) and stored != now:
            raise SelfCorrectError(
                f"results in {self.dir} for model '{model}' were computed in "
                f"{'/'.join(stored)} (--dtype/--head-dtype), now {'/'.join(now)}; use a new "
                "--out directory"
            )

    def _check_condition(self, benchmark: str, condition: str, digest: str) -> None:
        row = self.conn.execute(
            "SELECT hash FROM conditions WHERE benchmark=? AND condition=?", (benchmark, condition)
        ).fetchone()
        if row and row[0] != digest:
            raise SelfCorrectError(
                f"condition '{condition}' changed since results were stored in {self.dir} "
                f"(hash {row[0]} -> {digest}); use a new --out directory or rename the condition"
            )

    @_guarded
    def check_registration(self, benchmark: str, conditions: Sequence[tuple[str, str, dict]],
                           models: Sequence[tuple[str, str, dict]]) -> None:  # fmt: skip
        """Conditions (name, hash, spec) and models (name, sha256, info) as stored here, or
        new: an edited text or other weights under a stored name is refused."""
        for name, digest, _ in conditions:
            self._check_condition(benchmark, name, digest)
        for model, sha256, info in models:
            self._check_model(model, sha256, info)

    @_guarded
    def register_model(self, model: str, sha256: str, info: dict) -> None:
        self._check_model(model, sha256, info)
        with self.conn:
            self._insert_model(model, sha256, info)

    def _insert_model(self, model: str, sha256: str, info: dict) -> None:
        row = self.conn.execute("SELECT info FROM models WHERE model=?", (model,)).fetchone()
        if row:  # a run that records no arithmetic (a process of older code) keeps the stored
            info = {k: v for k, v in json.loads(row[0]).items() if k in ARITHMETIC_KEYS} | info
        self.conn.execute(
            "INSERT OR REPLACE INTO models VALUES (?, ?, ?)", (model, sha256, json.dumps(info))
        )

    @_guarded
    def register_run(
        self,
        manifest: dict,
        benchmark: str,
        items: pd.DataFrame,
        conditions: Sequence[tuple[str, str, dict]],
        models: Sequence[tuple[str, str, dict]],
    ) -> str:
        """The run, its items, conditions (name, hash, spec) and models (name, sha256, info),
        checked against what is stored, then written in one transaction; returns the run id."""
        self.check_registration(benchmark, conditions, models)
        records = items.astype(object).where(items.notna(), None).to_dict("records")
        run_id = _new_run_id()
        with self.conn:
            self.conn.execute(
                "INSERT INTO runs VALUES (?, ?, NULL, 'running', ?)",
                (run_id, time.time(), _dumps(manifest)),
            )
            self.conn.executemany(
                "INSERT OR IGNORE INTO items VALUES (?, ?, ?, ?)",
                [(benchmark, r["uid"], r["category"], json.dumps(r)) for r in records],
            )
            self.conn.executemany(
                "INSERT OR REPLACE INTO conditions VALUES (?, ?, ?, ?)",
                [(benchmark, name, digest, json.dumps(spec)) for name, digest, spec in conditions],
            )
            for model, sha256, info in models:
                self._insert_model(model, sha256, info)
            faults.point("register")
        return run_id

    # answers and generated turns -------------------------------------------------------------
    @_guarded
    def done_answers(self, model: str, benchmark: str, condition: str, readout: str) -> dict:
        """(uid, round) -> (pred, raw generated text or None) for what is stored."""
        rows = self.conn.execute(
            "SELECT uid, round, pred, raw FROM answers WHERE model=? AND benchmark=? "
            "AND condition=? "
            "AND readout=?",
            (model, benchmark, condition, readout),
        ).fetchall()
        return {(u, r): (p, raw) for u, r, p, raw in rows}

    @_guarded
    def done_turns(self, model: str, benchmark: str, condition: str, readout: str) -> dict:
        rows = self.conn.execute(
            "SELECT uid, step, text FROM turns WHERE model=? AND benchmark=? AND condition=? "
            "AND readout=?",
            (model, benchmark, condition, readout),
        ).fetchall()
        return {(u, s): t for u, s, t in rows}

    @_guarded
    def write(
        self, run_id: str, answers: Iterable[Answer] = (), turns: Iterable[tuple] = ()
    ) -> None:
        """One transaction: all of this batch is stored, or none of it."""
        now = time.time()
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO turns VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*t, run_id, now) for t in turns],
            )
            self.conn.executemany(
                f"INSERT OR REPLACE INTO answers ({', '.join(ANSWER_COLUMNS)}) VALUES "
                f"({', '.join('?' * len(ANSWER_COLUMNS))})",
                [
                    (
                        a.model,
                        a.benchmark,
                        a.condition,
                        a.condition_hash,
                        a.readout,
                        a.uid,
                        a.round,
                        a.prompt,
                        json.dumps(list(a.candidates)),
                        None if a.logprobs is None else json.dumps(list(a.logprobs)),
                        None if a.probs is None else json.dumps(list(a.probs)),
                        a.pred,
                        a.parse_status,
                        a.raw,
                        run_id,
                        now,
                        None if a.n_tokens is None else json.dumps(list(a.n_tokens)),
                    )
                    for a in answers
                ],
            )
            faults.point("write")  # inside the transaction: a kill here loses this batch only

    # shards -----------------------------------------------------------------------------------
    SHARD_TABLES = ("models", "turns", "answers")

    @_guarded
    def export_rows(
        self,
        model: str | None = None,
        benchmark: str = "",
        conditions: Sequence[str] = (),
        readouts: Sequence[str] = (),
    ) -> dict:
        """This store's results as plain JSON-able rows, column by name (what a shard sends
        back), or only one model's on a benchmark under these condition keys and readouts
        (what a shard resumes from)."""
        out = {}
        for table in self.SHARD_TABLES:
            where, args = "", ()
            if model is not None:
                where, args = "WHERE model=?", (model,)
                if table != "models":
                    c, r = ", ".join("?" * len(conditions)), ", ".join("?" * len(readouts))
                    where += f" AND benchmark=? AND condition IN ({c}) AND readout IN ({r})"
                    args = (model, benchmark, *conditions, *readouts)
            cur = self.conn.execute(f"SELECT * FROM {table} {where}", args)  # noqa: S608
            names = [d[0] for d in cur.description]
            out[table] = [dict(zip(names, r, strict=True)) for r in cur]
        return out

    @_guarded
    def merge_rows(self, rows: dict[str, list[list]], run_id: str) -> int:
        """Add a shard's rows in one transaction. Rows already present are kept as they are,
        so merging the same shard twice changes nothing; returns the answers added."""
        for row in rows.get("models", []):
            self.register_model(row["model"], row["sha256"], json.loads(row["info"]))
        with self.conn:
            before = self.conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
            for table, cols in (("turns", TURN_COLUMNS), ("answers", ANSWER_COLUMNS)):
                data = [{**r, "run_id": run_id} for r in rows.get(table, [])]
                if data:
                    self.conn.executemany(
                        f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) "  # noqa: S608
                        f"VALUES ({', '.join('?' * len(cols))})",
                        [[r.get(c) for c in cols] for r in data],
                    )
            after = self.conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
        return after - before

    # reading back ------------------------------------------------------------------------------
    @_guarded
    def outcomes(self, benchmark: str | None = None) -> pd.DataFrame:
        """One row per item x model x condition x readout x round, joined with item metadata."""
        where, args = ("WHERE a.benchmark=?", (benchmark,)) if benchmark else ("", ())
        n_tokens = "a.n_tokens" if self.version != "1" else "NULL AS n_tokens"
        df = pd.read_sql_query(
            "SELECT a.model, a.benchmark, a.condition, a.readout, a.round, a.uid, a.pred, "
            f"a.parse_status, a.probs, a.logprobs, {n_tokens}, a.candidates, i.meta "
            f"FROM answers a JOIN items i ON a.benchmark = i.benchmark AND a.uid = i.uid {where}",
            self.conn,
            params=args,
        )
        if df.empty:
            return df
        meta = pd.DataFrame([json.loads(m) for m in df.pop("meta")])
        meta = meta.drop(columns=[c for c in ("uid",) if c in meta])
        out = pd.concat([df.reset_index(drop=True), meta], axis=1)
        out["pred"] = out["pred"].astype("Int64")
        return out

    @_guarded
    def transcripts(self, benchmark: str | None = None) -> pd.DataFrame:
        """Every answer with its full rendered prompt and, for generation, the raw text."""
        where, args = ("WHERE benchmark=?", (benchmark,)) if benchmark else ("", ())
        return pd.read_sql_query(
            "SELECT model, benchmark, condition, readout, uid, round, prompt, candidates, "
            f"probs, pred, parse_status, raw FROM answers {where} "
            "ORDER BY model, condition, uid, round",
            self.conn,
            params=args,
        )

    @_guarded
    def answers_per_run(self) -> dict[str, int]:
        """How many answers each run stored."""
        return dict(self.conn.execute("SELECT run_id, COUNT(*) FROM answers GROUP BY run_id"))

    @_guarded
    def answer_span_per_run(self) -> dict[str, float]:
        """Seconds from each run's first to its last stored answer: a lower bound on the wall
        time of a run killed without timing."""
        return dict(self.conn.execute(
            "SELECT run_id, MAX(created) - MIN(created) FROM answers GROUP BY run_id"))  # fmt: skip

    @_guarded
    def first_answer_time(self) -> float | None:
        """When the store's first answer was stored (epoch seconds), None without answers."""
        return self.conn.execute("SELECT MIN(created) FROM answers").fetchone()[0]

    @_guarded
    def answered(self) -> dict[str, set]:
        """The models, and (benchmark, condition) pairs, that have at least one answer
        (conditions with a critic are stored as NAME+critic:MODEL)."""
        models = {m for (m,) in self.conn.execute("SELECT DISTINCT model FROM answers")}
        conds = set()
        for b, c in self.conn.execute("SELECT DISTINCT benchmark, condition FROM answers"):
            conds |= {(b, c), (b, c.split("+critic:")[0])}
        return {"models": models, "conditions": conds}

    @_guarded
    def models(self) -> dict[str, dict]:
        return {
            m: {"sha256": s, **json.loads(i)}
            for m, s, i in self.conn.execute("SELECT model, sha256, info FROM models")
        }

    @_guarded
    def conditions(self) -> list[dict]:
        return [
            {"benchmark": b, "condition": c, "hash": h, **json.loads(s)}
            for b, c, h, s in self.conn.execute("SELECT * FROM conditions")
        ]
