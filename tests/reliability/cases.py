"""Crafted bad inputs, as a new user might type them: each must end in a one-line error, exit 2,
no traceback, and leave any store unchanged. A case is (id, make) where make(tmp) writes what
the case needs under tmp and returns the command's arguments; `{store}` is a results directory
that already holds a finished run."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

STORE = "{store}"
MODEL = "smollm2-135m-instruct"  # resolution only (no case loads it)


def _write(tmp: Path, name: str, text: str | bytes) -> str:
    p = tmp / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text)
    return str(p)


def _run(*args):
    return lambda tmp: ["run", "--out", STORE, "--limit", "4", "--quiet", *args]


def _plan(text: str, *extra):
    return lambda tmp: ["run", "--plan", _write(tmp, "plan.toml", text), *extra]


LIB_HEAD = ('version = "u"\n[benchmarks.bbq]\nprompt = "{question_text}"\nanswer_prefill = "A:"\n'
            '[feedback]\nask = "again?"\nprefill = "Now:"\n')  # fmt: skip


def _library(body: str, conditions: str = "mine", model: str = MODEL):
    def make(tmp):
        lib = _write(tmp, "lib.toml", LIB_HEAD + body)
        return ["run", "--out", STORE, "--limit", "4", "--library", lib, "--conditions",
                conditions, "--model", model]  # fmt: skip

    return make


PRED_OK = {"category": "Age", "example_id": 1, "pred": 0, "condition": "baseline",
           "model": "x", "round": 0}  # fmt: skip


def _csv(text: str):
    return lambda tmp: ["score", "bbq", _write(tmp, "p.csv", text)]


def _jsonl(*rows):
    text = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"
    return lambda tmp: ["score", "bbq", _write(tmp, "p.jsonl", text)]


def _db(build):
    """A results directory whose results.sqlite `build(path)` makes."""

    def make(tmp):
        d = tmp / "db"
        d.mkdir()
        build(d / "results.sqlite")
        return ["report", str(d), "--bootstrap", "0"]

    return make


def _sql(path, *statements):
    c = sqlite3.connect(path)
    with c:
        for s in statements:
            c.execute(s)
    c.close()  # settled on disk before the command runs


def _foreign(path):
    _sql(
        path,
        "CREATE TABLE accounts (id INTEGER, name TEXT)",
        "INSERT INTO accounts VALUES (1, 'x')",
    )


def _copy_store(mutate):
    def build(path):
        import shutil

        shutil.copy(SOURCE["db"], path)
        mutate(path)

    return build


def _drop_turns(path):
    _sql(path, "DROP TABLE turns")


def _scramble(path):
    data = bytearray(Path(path).read_bytes())
    for k in range(4096, len(data), 97):  # every page after the header page
        data[k] ^= 0x5A
    Path(path).write_bytes(bytes(data))


SOURCE: dict[str, Path] = {}  # filled by the test fixture: a finished store to copy

CASES = [
    # run options
    ("batch-size -1", _run("--batch-size", "-1")),
    ("batch-size 0", _run("--batch-size", "0")),
    ("conditions ,", _run("--conditions", ",")),
    ("model ,", _run("--model", ",")),
    ("readout ,", _run("--readout", ",")),
    ("limit -3", _run("--limit", "-3")),
    ("limit lots", _run("--limit", "lots")),
    ("rounds -1", _run("--rounds", "-1")),
    ("device tpu9", _run("--device", "tpu9")),
    ("device cuda without CUDA", _run("--device", "cuda", "--model", MODEL)),
    ("cot-temperature nan", _run("--cot-temperature", "nan")),
    ("cot-temperature -1", _run("--cot-temperature", "-1")),
    ("concurrency 0", _run("--concurrency", "0")),
    ("bootstrap -1", _run("--bootstrap", "-1")),
    ("dtype int4", _run("--dtype", "int4")),
    ("unknown model", _run("--model", "gpt-9")),
    ("missing gguf", _run("--model", "/nonexistent/x.gguf")),
    ("served model without url", _run("--model", "openai:x")),
    ("unknown condition", _run("--conditions", "nicely")),
    ("condition of another benchmark", _run("--conditions", "match_stats")),
    ("unknown benchmark", _run("--benchmark", "mmlu")),
    ("unknown category", _run("--categories", "Age,Colour")),
    ("unknown backend", _run("--backend", "vllm")),
    ("unknown readout", _run("--readout", "guess")),
    ("critic without rounds", _run("--critic", MODEL)),
    (
        "exact transitions with sampled reasoning",
        _run("--rounds", "1", "--exact-transitions", "--cot-temperature", "1"),
    ),
    (
        "chat condition on a base model",
        _library(
            '[conditions.mine]\nprovenance = "reconstruction"\nrequires_chat = true\n'
            'bbq.instruction = "Hi."\n',
            "mine",
            "fake:base",
        ),
    ),  # fmt: skip
    # plans
    (
        "plan with a --model not in it",
        _plan(
            f'models = ["{MODEL}"]\n[[runs]]\nconditions = ["baseline"]\n',
            "--model",
            "qwen2.5-coder-0.5b-instruct",
        ),
    ),  # fmt: skip
    (
        "plan with --conditions",
        _plan('[[runs]]\nconditions = ["baseline"]\n', "--conditions", "instruct"),
    ),  # fmt: skip
    ("plan with --library", _plan('[[runs]]\nconditions = ["baseline"]\n', "--library", "x")),
    (
        "plan unknown model second",
        _plan(f'models = ["{MODEL}", "nosuch"]\n[[runs]]\nconditions = ["baseline"]\n'),
    ),
    (
        "plan limit -3 second run",
        _plan(
            f'models = ["{MODEL}"]\n[[runs]]\nconditions = ["baseline"]\n'
            '[[runs]]\nconditions = ["baseline"]\nlimit = -3\n'
        ),
    ),  # fmt: skip
    ("plan binary", lambda tmp: ["run", "--plan", _write(tmp, "p.toml", bytes(range(256)))]),
    ("plan bad TOML", _plan("models = [")),
    ("plan no runs", _plan('models = ["ladder"]\n')),
    ("plan unknown key", _plan('[[runs]]\nconditions = ["baseline"]\ncolour = 1\n')),
    ("plan missing", lambda tmp: ["run", "--plan", str(tmp / "nope.toml")]),
    # condition libraries
    (
        "library unknown placeholder",
        _library(
            '[conditions.mine]\nprovenance = "reconstruction"\nbbq.instruction = "Hi {nmae}."\n'
        ),
    ),
    (
        "library unbalanced brace",
        _library(
            '[conditions.mine]\nprovenance = "reconstruction"\nbbq.instruction = "Hi {dim."\n'
        ),
    ),
    (
        "library benchmarks = 5",
        lambda tmp: [
            "run",
            "--out",
            STORE,
            "--library",
            _write(tmp, "lib.toml", 'version = "u"\nbenchmarks = 5\n'),
        ],
    ),  # fmt: skip
    (
        "library aliases = [1]",
        _library(
            '[conditions.mine]\nprovenance = "reconstruction"\naliases = [1]\n'
            'bbq.instruction = "Hi."\n'
        ),
    ),  # fmt: skip
    (
        "library max_tokens lots",
        _library(
            '[critic]\nask = "{question}{answer}"\nfeedback = "{critique}"\nmax_tokens = "lots"\n'
            '[conditions.mine]\nprovenance = "reconstruction"\nbbq.instruction = "Hi."\n'
        ),
    ),
    (
        "library alias clash",
        _library(
            '[conditions.mine]\nprovenance = "reconstruction"\nbbq.instruction = "Hi."\n'
            '[conditions.other]\nprovenance = "reconstruction"\naliases = ["MINE"]\n'
            'bbq.instruction = "Ho."\n'
        ),
    ),  # fmt: skip
    (
        "library bad provenance",
        _library('[conditions.mine]\nprovenance = "folklore"\nbbq.instruction = "Hi."\n'),
    ),
    (
        "library attribute placeholder",
        _library(
            '[conditions.mine]\nprovenance = "reconstruction"\n'
            'bbq.instruction = "{dim.__class__}"\n'
        ),
    ),  # fmt: skip
    ("library not TOML", lambda tmp: ["run", "--library", _write(tmp, "l.toml", "version = [")]),
    # predictions to score
    ("pred fractional example_id", _csv("category,example_id,pred\nAge,0.9,1\n")),
    ("pred blank round", _csv("category,example_id,pred,round\nAge,1,1,0\nAge,2,1,\n")),
    (
        "pred blank condition",
        _csv("category,example_id,pred,condition\nAge,1,1,baseline\nAge,2,1,\n"),
    ),
    ("pred header only", _csv("category,example_id,pred\n")),
    ("pred JSON true", _jsonl({**PRED_OK, "pred": True})),
    ("pred example_id 1e23", _csv("category,example_id,pred\nAge,100000000000000000000000,1\n")),
    ("pred string round", _csv("category,example_id,pred,round\nAge,1,1,first\n")),
    ("pred numeric model (JSON)", _jsonl({**PRED_OK, "model": 7})),
    ("pred blank model", _csv("category,example_id,pred,model\nAge,1,1, \n")),
    ("pred extra uid column", _csv("category,example_id,pred,uid\nAge,1,1,Age:1\n")),
    ("pred extra gold column", _csv("category,example_id,pred,gold\nAge,1,1,2\n")),
    ("pred extra target_loc", _csv("category,example_id,pred,target_loc\nAge,1,1,0\n")),
    ("pred ragged CSV", _csv("category,example_id,pred\nAge,1,1,5,6\n")),
    ("pred nested JSON", _jsonl({**PRED_OK, "example_id": {"id": 1}})),
    ("pred option 7", _csv("category,example_id,pred\nAge,1,7\n")),
    ("pred unknown category", _csv("category,example_id,pred\nColour,1,1\n")),
    ("pred unknown item", _csv("category,example_id,pred\nAge,999999,1\n")),
    ("pred duplicate", _csv("category,example_id,pred\nAge,1,1\nAge,1,2\n")),
    ("pred no pred column", _csv("category,example_id\nAge,1\n")),
    ("pred not JSON", _jsonl("{not json")),
    ("pred missing file", lambda tmp: ["score", "bbq", str(tmp / "none.csv")]),
    ("score winogender", _csv("category,example_id,pred\nAge,1,1\n")),
    ("score bad format", lambda tmp: ["score", "bbq", "x.csv", "--format", "xml"]),
    # stores to read
    ("report 0-byte file", _db(lambda p: p.write_bytes(b""))),
    ("report foreign SQLite", _db(_foreign)),
    ("report dropped table", _db(_copy_store(_drop_turns))),
    ("report corrupt pages", _db(_copy_store(_scramble))),
    ("report text file", _db(lambda p: p.write_text("hello " * 1000))),
    ("report missing dir", lambda tmp: ["report", str(tmp / "nothing")]),
    ("report unknown bias variant", lambda tmp: ["report", STORE, "--bias-variant", "lm-eval"]),
    ("run into a foreign SQLite", lambda tmp: ["run", "--out", _foreign_dir(tmp), "--limit", "4"]),
]


def _foreign_dir(tmp: Path) -> str:
    d = tmp / "foreign"
    d.mkdir()
    _foreign(d / "results.sqlite")
    return str(d)


# the case "score winogender" needs its benchmark swapped in
_i = [k for k, (name, _) in enumerate(CASES) if name == "score winogender"][0]
CASES[_i] = (
    "score winogender",
    lambda tmp: ["score", "winogender", _write(tmp, "p.csv", "category,example_id,pred\n")],
)
