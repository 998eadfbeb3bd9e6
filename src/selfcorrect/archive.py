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
import json
import lzma
import os
from pathlib import Path

from selfcorrect.errors import SelfCorrectError
from selfcorrect.hidden import hidden_folders, model_folder
from selfcorrect.store import SCHEMA_VERSION, Store

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


def export_store(directory: str | Path, dest: str | Path, hidden: str = "all") -> dict:
    """Write the store under `directory` into `dest`; returns {"written": [...], "unchanged": n,
    "rows": {table: n}}. Safe beside a running writer (reads one snapshot). `hidden`: whose
    hidden states to copy: "all", "none" or comma-separated model names (they are large:
    about 2 bytes x width x layers per answer)."""
    store = Store(directory, read_only=True)
    dest = Path(dest)
    files, written, unchanged, counts = {}, [], 0, {}
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
                    data = _encode(cols, rows)
                    files[name] = {"rows": len(rows), "sha256": _sha256(data)}
                    counts[table] += len(rows)
                    if _write_if_changed(dest / name, data):
                        written.append(name)
                    else:
                        unchanged += 1
    finally:
        store.close()
    for src in _hidden_files(directory, hidden):
        name = src.relative_to(directory).as_posix()
        data = src.read_bytes()
        files[name] = {"rows": None, "sha256": _sha256(data)}
        if _write_if_changed(dest / name, data):
            written.append(name)
        else:
            unchanged += 1
    index = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "files": files}
    _write_if_changed(dest / INDEX, (json.dumps(index, indent=1, sort_keys=True) + "\n").encode())
    return {"written": written, "unchanged": unchanged, "rows": counts}


def _hidden_files(directory: str | Path, which: str) -> list[Path]:
    if which.strip() == "none":
        return []
    folders = hidden_folders(directory)
    if which.strip() != "all":
        wanted = {model_folder(directory, m.strip()) for m in which.split(",") if m.strip()}
        folders = [f for f in folders if f in wanted]
    return [p for f in folders for p in sorted(f.glob("*.safetensors"))]


def _read_index(src: Path) -> dict:
    try:
        index = json.loads((src / INDEX).read_text())
    except FileNotFoundError:
        raise SelfCorrectError(f"{src} is not a selfcorrect archive (no {INDEX})") from None
    except (OSError, ValueError) as exc:
        raise SelfCorrectError(f"cannot read {src / INDEX}: {exc}") from None
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise SelfCorrectError(f"{src / INDEX}: archive format {index.get('format')!r}, this "
                               f"version reads {FORMAT}")  # fmt: skip
    if index.get("schema_version") != SCHEMA_VERSION:
        raise SelfCorrectError(f"{src}: store schema {index.get('schema_version')!r}, this "
                               f"version writes {SCHEMA_VERSION}")  # fmt: skip
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


def _decode(path: Path, data: bytes, allowed: list[str]) -> tuple[list[str], list[list]]:
    try:
        header, *lines = lzma.decompress(data).decode().splitlines()
        cols = json.loads(header)
        rows = [json.loads(line) for line in lines]
    except (lzma.LZMAError, UnicodeDecodeError, ValueError) as exc:
        raise SelfCorrectError(f"archive file {path} is damaged ({exc})") from None
    unknown = [c for c in cols if c not in allowed]
    if unknown or any(len(r) != len(cols) for r in rows):
        what = f"unknown column '{unknown[0]}'" if unknown else "a row of the wrong length"
        raise SelfCorrectError(f"archive file {path} is damaged ({what})")
    return cols, rows


def restore_store(src: str | Path, directory: str | Path) -> dict[str, int]:
    """Rebuild (or complete) the store under `directory` from the archive in `src`; returns
    the rows added per table."""
    src = Path(src)
    index = _read_index(src)
    tables = {}
    for name in sorted(index["files"]):
        table = name.split("/")[0].removesuffix(".jsonl.xz")
        if name.startswith("hidden/"):
            continue
        if table not in KEYS:
            raise SelfCorrectError(f"{src / INDEX}: unknown table file {name!r}")
        tables.setdefault(table, []).append(name)
    store = Store(directory)
    added = {}
    try:
        decoded = {}
        for table, names in tables.items():
            allowed = _columns(store, table)
            decoded[table] = [_decode(src / n, _checked(src, n, index["files"][n]), allowed)
                              for n in names]  # fmt: skip
        for cols, rows in decoded.get("models", []):  # other weights under the same name: refused
            for r in rows:
                row = dict(zip(cols, r, strict=True))
                store._check_model(row["model"], row["sha256"])
        for cols, rows in decoded.get("conditions", []):
            for r in rows:
                row = dict(zip(cols, r, strict=True))
                store._check_condition(row["benchmark"], row["condition"], row["hash"])
        with store.conn:  # all or nothing
            for table in KEYS:
                before = store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
                for cols, rows in decoded.get(table, []):
                    if table == "runs":  # its process is not here: it ended when exported
                        i = cols.index("status")
                        rows = [[*r[:i], "interrupted", *r[i + 1:]] if r[i] == "running" else r
                                for r in rows]  # fmt: skip
                    store.conn.executemany(
                        f"INSERT OR IGNORE INTO {table} ({', '.join(cols)}) "  # noqa: S608
                        f"VALUES ({', '.join('?' * len(cols))})",
                        rows,
                    )
                after = store.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608
                added[table] = after - before
    finally:
        store.close()
    copied = 0
    for name, entry in index["files"].items():
        if name.startswith("hidden/"):
            data = _checked(src, name, entry)
            copied += _write_if_changed(Path(directory) / name, data)
    added["hidden files"] = copied
    return added
