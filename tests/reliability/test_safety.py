"""What a store, a report and a terminal may contain: no secrets, no math text or markup from
names acting as such, strict JSON, overlong prompts refused naming their item, names with
capitals selectable, models without answers said to have none."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from selfcorrect import api
from selfcorrect.backends.base import PromptTooLong
from selfcorrect.cli import app
from selfcorrect.errors import SelfCorrectError
from selfcorrect.redact import redact_url, scrub
from tests.fakes import BEHAVIOUR, FakeBackend

KEY, URL_PASSWORD, QUERY_KEY = "sk-env-SECRET-4242", "hunter2secret", "qk-SECRET-777"
URL = f"http://alice:{URL_PASSWORD}@models.example:8000/v1?api-key={QUERY_KEY}"


def everything_written(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file())


def test_no_secret_is_stored_written_or_printed(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFCORRECT_API_KEY", KEY)
    monkeypatch.setattr("sys.argv", ["selfcorrect", "run", "--base-url", URL, "--note", KEY])
    api.run("fake:a", base_url=URL, conditions="baseline", limit=4, out=tmp_path, bootstrap=0,
            progress=False)  # fmt: skip
    blob = everything_written(tmp_path)  # the store (and its WAL), every report file
    for secret in (KEY, URL_PASSWORD, QUERY_KEY):
        assert secret.encode() not in blob
    assert b"models.example:8000/v1" in blob  # the server is still named
    assert redact_url(URL) == "http://models.example:8000/v1"
    text = f"HTTP 500: echo Authorization: Bearer {KEY} at {URL}"
    assert KEY not in scrub(text) and URL_PASSWORD not in scrub(text)


def test_errors_printed_by_the_cli_are_scrubbed(tmp_path, monkeypatch):
    monkeypatch.setenv("SELFCORRECT_API_KEY", KEY)
    r = CliRunner().invoke(app, ["run", "--model", f"openai:{KEY}", "--out", str(tmp_path)])
    assert r.exit_code == 2 and KEY not in r.output and "***" in r.output


def test_names_with_capitals_math_and_markup(tmp_path):
    lib = tmp_path / "lib.toml"
    lib.write_text(
        'version = "u"\n[benchmarks.bbq]\nprompt = "{question_text}"\nanswer_prefill = "A:"\n'
        '[feedback]\nask = "again?"\nprefill = "Now:"\n'
        '[conditions.MyCond]\nprovenance = "reconstruction"\nbbq.instruction = "Hi."\n'
        '[conditions."$\\\\alpha$ <b>bold</b>"]\nprovenance = "reconstruction"\n'
        'bbq.instruction = "Ho."\n'
    )
    res = api.run("fake:$x^2$", conditions="mycond,$\\alpha$ <b>bold</b>", library=lib, limit=4,
                  out=tmp_path / "o", bootstrap=10, progress=False)  # fmt: skip
    assert set(res.summary["condition"]) == {"MyCond", "$\\alpha$ <b>bold</b>"}
    md = (tmp_path / "o" / "report" / "bbq" / "report.md").read_text()
    assert "<b>bold</b>" not in md and "&lt;b>bold&lt;/b>" in md
    html = (tmp_path / "o" / "report" / "report.html").read_text()
    assert "<b>bold" not in html and (tmp_path / "o/report/bbq/bbq_conditions.png").is_file()


def test_models_without_answers_are_said_to_have_none(tmp_path):
    BEHAVIOUR["fake:dies"] = {"fail_after": 0}
    try:
        with pytest.raises(KeyboardInterrupt):
            api.run("fake:ok,fake:dies", conditions="baseline", limit=4, out=tmp_path,
                    bootstrap=0, progress=False)  # fmt: skip
    finally:
        BEHAVIOUR.clear()
    api.report(tmp_path, n_boot=0)
    md = (tmp_path / "report" / "report.md").read_text()
    assert "fake:dies: sha256" in md and "- no answers" in md.split("fake:dies: sha256")[1][:200]
    assert "- no answers" not in md.split("fake:ok: sha256")[1].split("\n")[0]


def test_json_output_is_strict(tmp_path):
    path = tmp_path / "p.csv"
    pd.DataFrame({"category": ["Age"] * 2, "example_id": [1, 2], "pred": [None, None]}).to_csv(
        path, index=False)  # fmt: skip
    r = CliRunner().invoke(app, ["score", "bbq", str(path), "--format", "json", "--bootstrap",
                                 "0"])  # fmt: skip
    assert r.exit_code == 0, r.output

    def refuse(token):
        raise AssertionError(f"non-standard JSON constant {token}")

    data = json.loads(r.output, parse_constant=refuse)
    row = data["summary"][0]
    assert row["bias"] is None and not any(isinstance(v, float) and math.isnan(v)
                                           for v in row.values())  # fmt: skip


def test_a_prompt_over_the_context_names_its_item(tmp_path):
    class Short(FakeBackend):
        def score(self, prompts, candidates):
            raise PromptTooLong(1, 9000, 8192)

    from selfcorrect.benchmarks.bbq import BBQ
    from selfcorrect.conditions import load_library
    from selfcorrect.engine import Job, execute
    from selfcorrect.store import Store

    b = BBQ()
    items = b.sample(b.items(["Age"]), 2, 0)
    store = Store(tmp_path)
    run = store.register_run({}, "bbq", b.item_table(items), [], [])
    lib = load_library()
    job = Job("bbq", lib.resolve(["baseline"], "bbq"), items, 0, lib)
    with pytest.raises(SelfCorrectError, match=rf"item {items[1].uid} \(condition baseline, "
                       r"round 0\): a prompt of 9,000 tokens exceeds the model's context of "
                       r"8,192 tokens; .*fewer --rounds"):  # fmt: skip
        execute(store, run, "m", Short(), job)
    assert store.outcomes().empty


def test_debug_shows_the_traceback(tmp_path):
    r = CliRunner().invoke(app, ["--debug", "run", "--batch-size", "0"])
    assert r.exit_code != 0 and isinstance(r.exception, SelfCorrectError)
