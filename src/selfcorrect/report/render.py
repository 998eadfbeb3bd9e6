"""A report is a list of blocks, rendered twice: Markdown and one self-contained HTML page."""

from __future__ import annotations

import base64
import os
from html import escape
from pathlib import Path

import pandas as pd

Block = tuple  # ("h1"|"h2"|"p", text) | ("table", df) | ("img", file) | ("pre", title, body)
#               | ("list", [text])


def md_text(text) -> str:
    """Text outside code blocks: raw HTML from model or condition names is shown, not run."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;")  # no tag can open


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(no rows)_\n"
    cols = [str(c) for c in df.columns]
    esc = lambda v: md_text(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(esc(c) for c in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def render_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        kind = b[0]
        if kind == "h1":
            out.append(f"# {md_text(b[1])}\n")
        elif kind == "h2":
            out.append(f"## {md_text(b[1])}\n")
        elif kind == "p":
            out.append(md_text(b[1]) + "\n")
        elif kind == "list":
            out.append("\n".join(f"- {md_text(x)}" for x in b[1]) + "\n")
        elif kind == "table":
            out.append(to_markdown(b[1]))
        elif kind == "img":
            out.append(f"![{b[1]}]({b[1]})\n")
        elif kind == "pre":
            out += [f"**{md_text(b[1])}**\n", "~~~~text", b[2].replace("~~~~", "~ ~ ~ ~"),
                    "~~~~\n"]  # fmt: skip
    return "\n".join(out)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;"
    "color:#222}table{border-collapse:collapse;font-size:13px;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}"
    "pre{background:#f7f7f7;padding:8px;white-space:pre-wrap;font-size:12px}"
    "img{max-width:100%}details{margin:0.5em 0}"
)


def _html_block(b: Block, folder: Path) -> str | None:
    kind = b[0]
    if kind == "h1":
        return f"<title>{escape(b[1])}</title><h1>{escape(b[1])}</h1>"
    if kind in ("h2", "p"):
        return f"<{kind}>{escape(b[1])}</{kind}>"
    if kind == "list":
        return "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in b[1]) + "</ul>"
    if kind == "table":
        if b[1].empty:
            return "<p><em>(no rows)</em></p>"
        return b[1].to_html(index=False, escape=True, na_rep="n/a", border=0)
    if kind == "img":
        path = folder / b[1]
        if not path.is_file():
            return None
        data = base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{escape(b[1])}" src="data:image/png;base64,{data}">'
    if kind == "pre":
        return f"<details><summary>{escape(b[1])}</summary><pre>{escape(b[2])}</pre></details>"
    return None


def render_html(blocks: list[Block], folder: Path) -> str:
    """One self-contained page: figures embedded as data URIs, every text escaped (model
    output is untrusted), no script, no network."""
    out = [h for b in blocks if (h := _html_block(b, folder)) is not None]
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8">'
        f"<style>{_CSS}</style></head><body>" + "\n".join(out) + "</body></html>\n"
    )


def write_pages(blocks: list[Block], folder: Path) -> list[Path]:
    """report.md and report.html in `folder`."""
    files = []
    for name, text in (
        ("report.md", render_markdown(blocks)),
        ("report.html", render_html(blocks, folder)),
    ):
        tmp = folder / f".{name}.tmp"  # a page is whole or absent, never half written
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, folder / name)
        files.append(folder / name)
    return files
