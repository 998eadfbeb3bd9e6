"""CLI behaviour without a model: listings, scoring outside predictions, one-line errors."""

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from selfcorrect.benchmarks.bbq import BBQ
from selfcorrect.cli import app
from selfcorrect.metrics.bbq import summary

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert text.startswith("error:") and "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    for f in fragments:
        assert f in text


def test_listings():
    r = invoke("models")
    assert r.exit_code == 0 and "smollm2-135m-instruct" in r.output and "gemma-3-270m" in r.output
    r = invoke("conditions", "--benchmark", "bbq")
    assert r.exit_code == 0
    assert "does not rely on stereotypes." in r.output and "RECONSTRUCTION" in r.output
    r = invoke("benchmarks")
    assert r.exit_code == 0 and "Sexual_orientation" in r.output


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["run", "--model", "gpt-9"], ["unknown model 'gpt-9'", "smollm2-135m-instruct"]),
        (["run", "--conditions", "baseline,nicely"], ["unknown condition 'nicely'", "oracle"]),
        (["run", "--benchmark", "mmlu"], ["unknown benchmark 'mmlu'", "bbq"]),
        (["run", "--categories", "Age,Colour"], ["unknown BBQ category 'Colour'", "Religion"]),
        (["run", "--limit", "lots"], ["--limit must be a number or 'all'"]),
        (["run", "--rounds", "-1"], ["--rounds must be >= 0"]),
        (["run", "--seed", "-1"], ["--seed must be >= 0"]),
        (["run", "--ray", "local", "--save-hidden", "-1"], ["--save-hidden keeps states", "--ray"]),
        (["report", "/nonexistent/dir"], ["no results database"]),
        (["score", "bbq", "/nonexistent.csv"], ["no such predictions file"]),
        (["score", "winogender", "x.csv"], ["not available for winogender"]),
        (["score", "wino", "x.csv"], ["unknown benchmark 'wino'"]),
    ],
)
def test_bad_input_one_line(args, fragments):
    assert_one_line_error(invoke(*args), *fragments)


def test_unwritable_results_dir(tmp_path):
    blocker = tmp_path / "f"
    blocker.write_text("")
    r = invoke("run", "--out", str(blocker / "x"), "--limit", "2")
    assert_one_line_error(r, "cannot write results directory")


@pytest.fixture(scope="module")
def predictions():
    b = BBQ()
    items = b.sample(b.items(["Age", "SES"]), 40, 3)
    rows = []
    for k, it in enumerate(items):
        for cond, shift in (("baseline", 0), ("instruct", 1)):
            pred = None if k == 0 else (it.gold + shift * (k % 2)) % 3
            rows.append(
                {
                    "category": it.category,
                    "example_id": it.meta["example_id"],
                    "pred": pred,
                    "condition": cond,
                    "model": "other-tool",
                }
            )
    return b, items, pd.DataFrame(rows)


def test_score_matches_metrics(tmp_path, predictions):
    b, items, df = predictions
    path = tmp_path / "preds.csv"
    df.to_csv(path, index=False)
    r = invoke("score", "bbq", str(path), "--format", "json", "--bootstrap", "50")
    assert r.exit_code == 0, r.output
    got = pd.DataFrame(json.loads(r.output)["summary"])
    merged = df.merge(b.item_table(items), on=["category", "example_id"])
    merged["pred"] = merged["pred"].astype("Int64")
    want = summary(merged, n_boot=0)
    key = ["condition", "group", "context"]
    both = got.merge(want, on=key, suffixes=("", "_want"))
    assert len(both) == len(want) > 0
    assert (both["accuracy"] - both["accuracy_want"]).abs().max() < 1e-12
    assert ((both["bias"] - both["bias_want"]).abs().fillna(0) < 1e-12).all()
    assert int(got[(got.group == "overall")]["n_unparseable"].sum()) == 2
    assert (tmp_path / "preds-scores" / "summary.csv").is_file()
    assert (tmp_path / "preds-scores" / "report.md").is_file()
    # JSONL in, same numbers out
    jpath = tmp_path / "preds.jsonl"
    df.to_json(jpath, orient="records", lines=True)
    r2 = invoke("score", "bbq", str(jpath), "--format", "json", "--bootstrap", "50")
    assert json.loads(r2.output)["summary"] == json.loads(r.output)["summary"]
    r3 = invoke("score", "bbq", str(path), "--bootstrap", "0")
    assert r3.exit_code == 0 and "other-tool" in r3.output


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda d: d.drop(columns=["pred"]), "lacks column(s): pred"),
        (lambda d: d.assign(pred=7), "expected an option index 0, 1 or 2"),
        (lambda d: d.assign(category="Colour"), "unknown BBQ category 'Colour'"),
        (lambda d: d.assign(example_id=999999), "no BBQ item"),
        (lambda d: pd.concat([d, d]), "appears twice"),
    ],
)
def test_score_bad_files(tmp_path, predictions, mutate, fragment):
    path = tmp_path / "bad.csv"
    mutate(predictions[2]).to_csv(path, index=False)
    assert_one_line_error(invoke("score", "bbq", str(path)), fragment)
