"""A results store as plain files a repository can keep, and the store rebuilt from them.

`export` writes every table as xz-compressed JSON lines (a header of column names, then one
JSON array per row, rows in primary-key order), answers and turns in one file per run, and
copies the hidden-state files as they are. The bytes depend only on the rows, so a finished
run's file never changes again and re-exporting a growing store rewrites only what grew.
`restore` checks every file against the index's sha256 and inserts the rows into a store
(rows already there are kept; other weights or changed condition texts are refused, as in a
run); a run that was still running when exported comes back as interrupted. No pickles, no SQL
from files: rows go in through parameterised inserts of known columns."""

from __future__ import annotations

import hashlib
import itertools
import json
import lzma
import os
import sqlite3
from pathlib import Path

from selfcorrect.errors import SelfCorrectError
from selfcorrect.hidden import hidden_folders, model_folder
from selfcorrect.store import MIGRATIONS, SCHEMA_VERSION, Store

FORMAT = 1
INDEX = "archive.json"
KEYS = {  # primary keys, the order rows are written in
    "meta": ("key",),
    "runs": ("run_id",),
    "models": ("model",),
    "conditions": ("benchmark", "condition"),
    "items": ("benchmark", "uid"),
    "turns": ("model", "benchmark", "condition", "readout", "uid", "step"),
    "answers": ("model", "benchmark", "condition", "readout", "uid", "round"),
}
PER_RUN = ("turns", "answers")  # one file per run: a finished run's file is final


def _columns(store: Store, table: str) -> list[str]:
    return [r[1] for r in store.conn.execute(f"PRAGMA table_info({table})")]


def _encode(columns: list[str], rows) -> bytes:
    lines = [json.dumps(columns)] + [json.dumps(list(r), ensure_ascii=False) for r in rows]
    # one thread and a fixed preset: the same rows always give the same bytes
    return lzma.compress(("\n".join(lines) + "\n").encode(), preset=6)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # whole or absent
    return True


def export_store(directory: str | Path, dest: str | Path, hidden: str = "all",
                 force: bool = False) -> dict:  # fmt: skip
    """Write the store under `directory` into `dest`; returns {"written": [...], "unchanged": n,
    "removed": [...], "rows": {table: n}, "no_hidden": [...]}. Safe beside a running writer
    (reads one snapshot). `hidden`: whose hidden states to copy: "all", "none" or
    comma-separated model names (they are large: about 2 bytes x width x layers per answer).
    An archive holding runs this store lacks is refused unless `force` (exporting a new store
    over an old archive would drop them from its index)."""
    dest = Path(dest)
    if dest.resolve() == Path(directory).resolve():  # its clean-up would delete hidden states
        raise SelfCorrectError(f"export {directory} into another directory, not into itself")
    store = Store(directory, read_only=True)
    tables, counts = {}, {}
    try:
        with store.conn:  # one read transaction: every table from the same moment
            store.conn.execute("BEGIN")
            for table, keys in KEYS.items():
                cols = _columns(store, table)
                order = ", ".join(keys)
                groups = [(None, f"{table}.jsonl.xz")]
                if table in PER_RUN:
                    runs = [r for (r,) in store.conn.execute(
                        f"SELECT DISTINCT run_id FROM {table} ORDER BY run_id")]  # noqa: S608  # fmt: skip
                    groups = [(r, f"{table}/{r}.jsonl.xz") for r in runs]
                counts[table] = 0
                for run_id, name in groups:
                    where, args = ("WHERE run_id=?", (run_id,)) if run_id else ("", ())
                    sql = f"SELECT * FROM {table} {where} ORDER BY {order}"  # noqa: S608
                    rows = store.conn.execute(sql, args).fetchall()
                    tables[name] = (len(rows), _encode(cols, rows))
                    counts[table] += len(rows)
        version = store.version
    finally:
        store.close()
    old = _read_index(dest)["files"] if (dest / INDEX).is_file() else {}
    lost = sorted(n for n in old if n.startswith(PER_RUN) and n not in tables)
    if lost and not force:
        raise SelfCorrectError(
            f"{dest} holds {len(lost)} run file(s) that {directory} lacks (e.g. {lost[0]}): "
            f"restore the archive into the store first, or export with --force to drop them"
        )
    paths, no_hidden = _hidden_files(directory, hidden)
    # hidden files read after the snapshot: a batch's states are written before its answers
    copies = ((p.relative_to(directory).as_posix(), (None, p.read_bytes())) for p in paths)
    files, written, unchanged = {}, [], 0
    for name, (n, data) in itertools.chain(tables.items(), copies):
        files[name] = {"rows": n, "sha256": _sha256(data)}
        if _write_if_changed(dest / name, data):
            written.append(name)
        else:
            unchanged += 1
    index = {"format": FORMAT, "schema_version": version, "files": files}
    _write_if_changed(dest / INDEX, (json.dumps(index, indent=1, sort_keys=True) + "\n").encode())
    removed = []
    for p in sorted(dest.rglob("*")):  # ours but no longer indexed (or a crash's .tmp)
        name = p.relative_to(dest).as_posix()
        ours = name.endswith((".jsonl.xz", ".tmp")) or name.startswith("hidden/")
        if p.is_file() and ours and name not in files:
            p.unlink()
            removed.append(name)
    return {"written": written, "unchanged": unchanged, "removed": removed, "rows": counts,
            "no_hidden": no_hidden}  # fmt: skip


def _hidden_files(directory: str | Path, which: str) -> tuple[list[Path], list[str]]:
    """The hidden-state files to copy, and the models asked for that have none (a typo, or
    none yet: said, not fatal, so a checkpoint can name a model still to come)."""
    if which.strip() == "none":
        return [], []
    folders = hidden_folders(directory)
    missing = []
    if which.strip() != "all":
        wanted = {m.strip(): model_folder(directory, m.strip()) for m in which.split(",")
                  if m.strip()}  # fmt: skip
        missing = [m for m, f in wanted.items() if f not in folders]
        folders = [f for f in folders if f in wanted.values()]
    return [p for f in folders for p in sorted(f.glob("*.safetensors"))], missing


def _read_index(src: Path) -> dict:
    try:
        index = json.loads((src / INDEX).read_text())
    except FileNotFoundError:
        raise SelfCorrectError(f"{src} is not a selfcorrect archive (no {INDEX})") from None
    except (OSError, ValueError) as exc:
        raise SelfCorrectError(f"cannot read {src / INDEX}: {exc}") from None
    if not isinstance(index, dict):
        raise SelfCorrectError(f"{src / INDEX}: not an archive index (a JSON object)")
    if index.get("format") != FORMAT:
        raise SelfCorrectError(f"{src / INDEX}: archive format {index.get('format')!r}, this "
                               f"version reads {FORMAT}")  # fmt: skip
    if not isinstance(index.get("files"), dict):
        raise SelfCorrectError(f"{src / INDEX}: no file list (files)")
    if index.get("schema_version") not in (SCHEMA_VERSION, *MIGRATIONS):  # older: columns added
        raise SelfCorrectError(f"{src}: store schema {index.get('schema_version')!r}, this "
                               f"version reads {SCHEMA_VERSION} and older")  # fmt: skip
    return index


def _checked(src: Path, name: str, entry: dict) -> bytes:
    """A file's bytes, refused unless they are the ones the index names."""
    path = src / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise SelfCorrectError(f"{src / INDEX}: file name {name!r} leaves the archive")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SelfCorrectError(f"archive file {path} cannot be read: {exc.strerror}") from None
    if _sha256(data) != entry.get("sha256"):
        raise SelfCorrectError(f"archive file {path} is damaged (sha256 differs from {INDEX})")
    return data


def _decode(path: Path, data: bytes) -> tuple[list[str], list[list]]:
    try:
        # "\n" only: splitlines() would also cut at U+2028 or U+0085 inside a model's text
        header, *lines = lzma.decompress(data).decode().removesuffix("\n").split("\n")
        cols = json.loads(header)
        rows = [json.loads(line) for line in lines]
    except (lzma.LZMAError, UnicodeDecodeError, ValueError) as exc:
        raise SelfCorrectError(f"archive file {path} is damaged ({exc})") from None
    if any(not isinstance(r, list) or len(r) != len(cols) for r in rows):
        raise SelfCorrectError(f"archive file {path} is damaged (a row of the wrong length)")
    return cols, rows


def restore_store(src: str | Path, directory: str | Path) -> dict[str, int]:
    """Rebuild (or complete) the store under `directory` from the archive in `src`; returns
    the rows added per table. Every file is checked before anything is written, and the rows
    go in as one transaction: a refused archive leaves the store as it was."""
    src = Path(src)
    index = _read_index(src)
    tables, hidden = {}, {}
    for name, entry in sorted(index["files"].items()):
        data = _checked(src, name, entry)
        if name.startswith("hidden/"):
            hidden[name] = data
            continue
        table = name.split("/")[0].removesuffix(".jsonl.xz")
        if table not in KEYS:
            raise SelfCorrectError(f"{src / INDEX}: unknown table file {name!r}")
        tables.setdefault(table, []).append((name, *_decode(src / name, data)))
    store = Store(directory)
    added = {}
    try:
        for table, parts in tables.items():
            allowed = _columns(store, table)
            for name, cols, _ in parts:
                unknown = [c for c in cols if c not in allowed]
                if unknown:
                    raise SelfCorrectError(f"archive file {src / name} is damaged (unknown "
                                           f"column '{unknown[0]}')")  # fmt: skip
        for _, cols, rows in tables.get("models", []):  # other weights, same name: refused
            for r in rows:
                row = dict(zip(cols, r, strict=True))
                store._check_model(row["model"], row["sha256"], json.loads(row["info"]))
        for _, cols, rows in tables.get("conditions", []):
            for r in rows:
                row = dict(zip(cols, r, strict=True))
                store._check_condition(row["benchmark"], row["condition"], row["hash"])
        with store.conn:  # all or nothing
            for table in KEYS:
                count = f"SELECT COUNT(*) FROM {table}"  # noqa: S608
                before = store.conn.execute(count).fetchone()[0]
                for _, cols, rows in tables.get(table, []):
                    if table == "runs":  # its process is not here: it ended when exported
                        i = cols.index("status")
                        rows = [[*r[:i], "interrupted", *r[i + 1:]] if r[i] == "running" else r
                                for r in rows]  # fmt: skip
                    store.conn.executemany(  # a key already stored is kept; a bad row fails
                        f"INSERT INTO {table} ({', '.join(cols)}) "  # noqa: S608
                        f"VALUES ({', '.join('?' * len(cols))}) ON CONFLICT DO NOTHING",
                        rows,
                    )
                added[table] = store.conn.execute(count).fetchone()[0] - before
                expected = sum(len(rows) for _, _, rows in tables.get(table, []))
                if before == 0 and added[table] != expected:
                    raise SelfCorrectError(f"{src}: {table} holds {expected} rows, "
                                           f"{added[table]} went in (duplicate keys)")  # fmt: skip
    except sqlite3.IntegrityError as exc:
        raise SelfCorrectError(f"{src}: a row cannot be stored ({exc}); nothing was "
                               "restored") from None  # fmt: skip
    finally:
        store.close()
    copied = 0
    for name, data in hidden.items():
        copied += _write_if_changed(Path(directory) / name, data)
    added["hidden files"] = copied
    return added
