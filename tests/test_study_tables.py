"""docs/results/tables.py: the study README's tables are generated from a report, numbered,
with CIs, and a partial study (some benchmarks missing) still gets its tables."""

import importlib.util
from pathlib import Path

import pytest

from selfcorrect import api
from tests.fakes import BEHAVIOUR  # noqa: F401  (registers the fake backend)

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "results" / "tables.py"


def test_tables_from_a_small_report(tmp_path):
    spec = importlib.util.spec_from_file_location("study_tables", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    api.run("fake:a", conditions="baseline,instruct,oracle", limit=24, out=tmp_path,
            bootstrap=50, progress=False, permute="cyclic", rounds=1)  # fmt: skip
    text = mod.tables(tmp_path / "report", tmp_path, "interim: one model")
    assert text.startswith("# The study's tables") and "\n> interim: one model\n" in text
    titles = [line for line in text.splitlines() if line.startswith("## T")]
    assert [t.split(".")[0] for t in titles] == [f"## T{k}" for k in range(1, len(titles) + 1)]
    assert any("Validity gate" in t for t in titles) and any("Cost" in t for t in titles)
    assert any("which person" in t for t in titles)  # the report wrote bbq/named_switch.csv
    paired = text[text.index("Readout comparison, paired") :]
    row = next(line for line in paired.splitlines() if line.startswith("| 1 | fake:a | ambig"))
    assert row.count("[") == 2 and "(p " in row  # both readings of the orders, with CIs
    assert not any("Law school" in t for t in titles)  # no law answers: no law table
    row = next(line for line in text.splitlines() if line.startswith("| 1 | fake:a | baseline"))
    assert "[" in row  # estimates carry their CI
    # the gate's table shows the diagnostics it read, passing or not
    head = next(line for line in text.splitlines() if "| verdict | reasons |" in line)
    assert head.endswith("| position consistency | top letter share | oracle accuracy % | "
                         "unparseable % |")  # fmt: skip
    gate_row = next(line for line in text.splitlines() if line.startswith("| 1 | fake:a | logprob"))
    cells = [c.strip() for c in gate_row.split("|")[-5:-1]]
    assert all(c.replace(".", "").isdigit() for c in cells), gate_row


def test_a_report_file_left_empty_by_a_missing_part_gets_no_table(tmp_path):
    """Without permuted orders (part 1 not yet stored) the report leaves bbq/orders.csv
    empty, without a header: that table is left out, the others still come (an interim
    read of the rounds part alone stopped on it)."""
    mod = _module()
    api.run("fake:a", conditions="baseline,instruct", limit=12, out=tmp_path, bootstrap=20,
            progress=False, permute="none", rounds=1)  # fmt: skip
    orders = tmp_path / "report" / "bbq" / "orders.csv"
    assert orders.is_file() and not orders.read_text().strip()
    text = mod.tables(tmp_path / "report", tmp_path)
    titles = [line for line in text.splitlines() if line.startswith("## T")]
    assert not any("Readout comparison" in t for t in titles)  # neither reading nor paired
    assert any("Rounds: convergence" in t for t in titles)


def _module():
    spec = importlib.util.spec_from_file_location("study_tables", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_law_winogender_and_hidden_tables_read_the_columns_the_report_writes(tmp_path):
    """One hand-made row per table, with the report's column names: a renamed column fails
    here, not on the study's last day."""
    import pandas as pd

    mod = _module()
    (tmp_path / "law").mkdir()
    pd.DataFrame([{"model": "m", "condition": "cot+sample:T1", "round": 0, "attribute": "race",
                   "n_students": 1000,
                   "parity": -0.17, "parity_lo": -0.194, "parity_hi": -0.146,
                   "admit_Black": 0.44, "admit_white": 0.74, "flip_share": 0.33,
                   "r_gpa": 0.55, "r_gpa_lo": 0.48, "r_gpa_hi": 0.61, "r_lsat": -0.1,
                   "r_lsat_lo": -0.2, "r_lsat_hi": 0.0, "merit_read": True,
                   "distinct_p_yes": 96}]).to_csv(
        tmp_path / "law" / "summary.csv", index=False)  # fmt: skip
    assert "| 1 | m | cot+sample:T1 | 1000 | -17.0 [-19.4, -14.6] | 44% / 74% | 33% |" in (
        mod.law(tmp_path)
    )
    assert mod.law(tmp_path).rstrip().endswith("| yes | 96 |")  # r GPA's CI lies above 0
    assert "| 33% | n/a | n/a |" in mod.law(tmp_path)  # a summary without the split and r
    split = pd.read_csv(tmp_path / "law" / "summary.csv").assign(
        flips_to_Black=238, flips_to_white=255, flip_split_p=0.4712, r_versions=0.04,
        r_versions_lo=-0.02, r_versions_hi=0.10)  # fmt: skip
    sex = split.assign(attribute="sex", flip_split_p=0.01)  # not the study's: left out
    pd.concat([split, sex]).to_csv(tmp_path / "law" / "summary.csv", index=False)
    assert "| 33% | 238 / 255 (p 0.47) | 0.04 [-0.02, 0.10] |" in mod.law(tmp_path)
    assert "(p 0.01)" not in mod.law(tmp_path)
    ignores = pd.read_csv(tmp_path / "law" / "summary.csv").assign(merit_read=False)
    ignores.to_csv(tmp_path / "law" / "summary.csv", index=False)
    assert mod.law(tmp_path).rstrip().endswith("| no | 96 |")  # neither CI above 0
    (tmp_path / "winogender").mkdir()
    pd.DataFrame([{"model": "m", "condition": "baseline", "round": 0, "n_occupations": 60,
                   "pearson_r": 0.53, "r_lo": 0.31, "r_hi": 0.69, "pearson_r_fm": 0.6,
                   "r_fm_lo": 0.4, "r_fm_hi": 0.75, "mae": 30.04, "slope": 0.21,
                   "mean_p_female": 0.17, "neutral_rate": 0.05}]).to_csv(
        tmp_path / "winogender" / "summary.csv", index=False)  # fmt: skip
    assert "| 1 | m | baseline | 60 | 0.53 [0.31, 0.69] | 0.60 [0.40, 0.75] | 30.0 |" in (
        mod.winogender(tmp_path)
    )
    changes = [
        {
            "model": "m",
            "readout": "logprob",
            "round": 0,
            "condition": "cot",
            "reference": "baseline",
            "metric": k,
            "n_occupations": 60,
            "diff": d,
            "diff_lo": d - 0.1,
            "diff_hi": d + 0.1,
        }
        for k, d in (("pearson_r", -0.25), ("neutral_rate", 0.16), ("mae", 1.4))
    ]
    pd.DataFrame(changes).to_csv(tmp_path / "winogender" / "paired.csv", index=False)
    # the neutral share is x100; a metric the report did not write is left empty (slope)
    assert (
        "| 1 | m | cot - baseline | 60 | -0.25 [-0.35, -0.15] |  | 16.0 [6.0, 26.0] | "
        "1.4 [1.3, 1.5] |  |" in mod.winogender(tmp_path)
    )
    (tmp_path / "bbq").mkdir()
    rows = [{"model": "m", "condition": c, "readout": r, "n_items": 528, "n_asked": 1584,
             "sample_agreement": 0.303, "unknown_rate": 0.29, "accuracy": 0.502}
            for c, r in (("cot+sample:T1", "cloze"), ("cot+sample:T1", "logprob"),
                         ("baseline", "cloze"))]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "bbq" / "validity.csv", index=False)
    table = mod.cot(tmp_path)
    assert "| 1 | m | cot+sample:T1 | 528 | 1584 | 30.0 | 29.0 | 50.0 |" in table
    assert "| 2 |" not in table  # the content readout's sampled rows only
    pd.DataFrame(rows[2:]).to_csv(tmp_path / "bbq" / "validity.csv", index=False)
    assert mod.cot(tmp_path) == ""  # no sampled reasoning: no table
    (tmp_path / "report" / "hidden").mkdir(parents=True)
    pd.DataFrame([{"model": "m", "condition": "baseline", "readout": "cloze", "layer": 14,
                   "n_test": 500, "probe_accuracy": 0.8, "probe_lo": 0.7, "probe_hi": 0.9,
                   "majority_accuracy": 0.6, "shift_norm": 3.2, "cosine": 0.1,
                   "cosine_lo": 0.0, "cosine_hi": 0.2, "n_shifts": 400}]).to_csv(
        tmp_path / "report" / "hidden" / "hidden.csv", index=False)  # fmt: skip
    assert "| 1 | m | baseline | cloze | 14 | 500 | 80 [70, 90] | 60.0 |" in mod.hidden(tmp_path)


def test_a_threshold_verdict_shows_its_evidence_and_a_tested_one_its_test_rows(tmp_path):
    import pandas as pd

    mod = _module()
    pd.DataFrame([{"id": "H1", "claim": "c1", "verdict": "inconclusive", "status": "pre",
                   "evidence": "m: instruct - baseline = -1.0"},
                  {"id": "H2", "claim": "c2", "verdict": "out of scope", "status": "pre",
                   "evidence": "no data"},
                  {"id": "H6", "claim": "c6", "verdict": "not supported", "status": "pre",
                   "evidence": "m ambig: oracle accuracy 29.4 [26.3, 32.4]%"}]).to_csv(
        tmp_path / "verdicts.csv", index=False)  # fmt: skip
    pd.DataFrame([{"hypothesis": "H1", "test": "m: instruct - baseline", "range": "in",
                   "estimate": -0.01, "ci_lo": -0.04, "ci_hi": 0.02, "p": 0.6, "p_adj": 1.0,
                   "family_size": 1, "mde": 0.06, "underpowered": True, "n_items": 1100,
                   "outcome": "inconclusive"}]).to_csv(
        tmp_path / "verdict_tests.csv", index=False)  # fmt: skip
    text = mod.verdicts(tmp_path)
    assert "| 3 | H6 | c6 | not supported | pre | m ambig: oracle accuracy 29.4" in text
    assert "| 1 | H1 | c1 | inconclusive | pre |  |" in text  # its test rows say it
    assert "| 2 | H2 | c2 | out of scope | pre |  |" in text  # "no data" is no evidence
    assert "| 1 | H1 | m: instruct - baseline | in | -1.0 [-4.0, 2.0] | 0.6 | 1 |" in text


def test_subset_copies_the_named_models_and_leaves_a_running_runs_answers_out(tmp_path):
    import sqlite3

    spec = importlib.util.spec_from_file_location("study_subset", SCRIPT.with_name("subset.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = tmp_path / "store"
    for model in ("fake:a", "fake:b"):
        api.run(model, conditions="baseline", limit=6, out=src, bootstrap=0, progress=False,
                permute="none", write_report=False)  # fmt: skip
    db = sqlite3.connect(src / "results.sqlite")
    run_b = db.execute("select run_id from answers where model = 'fake:b'").fetchone()[0]
    db.execute("update runs set status = 'running' where run_id = ?", (run_b,))
    db.commit()
    db.close()
    out = mod.subset(src, tmp_path / "a", ["fake:a"])
    assert out["answers"] == {"fake:a": 6} and out["runs dropped"] == 1
    both = mod.subset(src, tmp_path / "ab", ["fake:a", "fake:b"])
    assert both["answers"] == {"fake:a": 6} and both["running left out"] == [run_b]
    kept = mod.subset(src, tmp_path / "k", ["fake:b"], keep_running=True)
    assert kept["answers"] == {"fake:b": 6}
    with pytest.raises(SystemExit):  # never over an existing store
        mod.subset(src, tmp_path / "a", ["fake:a"])


def test_rounds_table_reads_the_uncertainty_of_the_rounds_items(tmp_path):
    import pandas as pd

    mod = _module()
    (tmp_path / "bbq").mkdir()
    pd.DataFrame([{"model": "m", "condition": "baseline", "readout": "cloze", "items": 264,
                   "rounds": 6, "mean_convergence_round": 0.05}]).to_csv(
        tmp_path / "bbq" / "convergence.csv", index=False)  # fmt: skip
    rows = [{"model": "m", "condition": "baseline", "readout": r, "round": k, "n": 264,
             "entropy": e, "entropy_lo": e * 0.9, "entropy_hi": e * 1.1, "p_gold": 0.4,
             "p_gold_lo": 0.35, "p_gold_hi": 0.45, "ece": 0.3, "ece_lo": 0.28, "ece_hi": 0.33}
            for r in ("cloze", "cloze/byte") for k, e in ((0, 0.61), (6, 0.014))]  # fmt: skip
    pd.DataFrame(rows).to_csv(tmp_path / "bbq" / "rounds_uncertainty.csv", index=False)
    table = mod.rounds(tmp_path)
    assert "| 1 | m | baseline | cloze | 0 | 264 | 0.61 [0.55, 0.67] | 0.40 [0.35, 0.45] |" in table
    assert "| 2 | m | baseline | cloze | 6 | 264 | 0.01 [0.01, 0.02] |" in table
    assert "cloze/byte" not in table.split("uncertainty and calibration per round")[1]


def test_finish_refuses_a_store_with_a_run_still_running(tmp_path):
    """docs/results/finish.sh reads a complete store only: a run marked running (a part still
    computing) stops it before any file is written."""
    import sqlite3
    import subprocess
    import sys

    store = tmp_path / "study"
    store.mkdir()
    db = sqlite3.connect(store / "results.sqlite")
    db.execute("create table runs (run_id text, status text)")
    db.executemany("insert into runs values (?, ?)", [("r1", "finished"), ("r2", "running")])
    db.commit()
    db.close()
    script = SCRIPT.parent / "finish.sh"
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OUT": str(tmp_path / "out"),
           "REPORT": "existing"}  # fmt: skip
    done = subprocess.run(["bash", str(script), str(store)], cwd=SCRIPT.parents[2], env=env,
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 1
    assert "runs still marked running" in done.stderr and "r2" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_side_by_side_table_cites_the_row_each_number_comes_from():
    """Each cell quotes a row of a table shown above it, with that table's number and the
    row's number; a model without such a row gets "-" (a model that fails the gate has no BBQ
    test), and a store without the gate table gets no side-by-side table."""
    import pandas as pd

    mod = _module()
    mod.COUNTER = iter(range(1, 100))
    mod.SHOWN.clear()
    assert mod.side_by_side() == ""
    gate = pd.DataFrame({"model": ["a", "b"], "readout": ["cloze", "cloze"],
                         "verdict": ["passes", "does not follow the format"]})  # fmt: skip
    mod.section("gate", gate, key="gate")
    tests = pd.DataFrame({"test": ["a: s4 - instruct, ambig bias",
                                   "a: instruct - baseline, ambig bias"],
                          "estimate x100 [95% CI]": ["0.4 [-1.8, 2.7]", "-1.6 [-5.2, 1.9]"],
                          "p adj": ["1", "0.04"], "outcome": ["no effect", "down"]})  # fmt: skip
    mod.section("contrasts", tests, key="contrasts")
    table = mod.side_by_side()
    assert "## T3. Side by side" in table
    row = next(line for line in table.splitlines() if "| G23 1b, 1d" in line)
    assert row.endswith("| -1.6 [-5.2, 1.9], Holm p 0.04, down (T2 row 2) | - |")
    gate_row = next(line for line in table.splitlines() if "| this study: validity gate" in line)
    assert gate_row.endswith("| passes (T1 row 1) | does not follow the format (T1 row 2) |")
    # columns from the smallest model (the ladder's order), unknown sizes last
    mod.COUNTER = iter(range(3, 100))
    smallest_first = mod.side_by_side({"a": 2e9, "b": 1e8})
    assert "| what it says | b | a |" in smallest_first
    assert "| what it says | a | b |" in mod.side_by_side({"a": 2e9})  # b: size unknown
    # no BBQ table was shown: nothing to cite
    assert "| G23 1a | ambiguous BBQ bias under Q: about 0 up to 22B, rising above | - | - |" in (
        table
    )
    # two rows that the cited table does not tell apart: an error, not the first of them
    mod.COUNTER = iter(range(1, 100))
    mod.SHOWN.clear()
    mod.section("gate", pd.concat([gate, gate.iloc[:1]]), key="gate")
    with pytest.raises(ValueError, match=r"matches rows 1, 3 of T1"):
        mod.side_by_side()


def test_the_gpu_projection_table_sits_beside_this_cpus_wall_time(tmp_path):
    """finish.sh passes perf/gpu_projection.py's JSON with --gpu: its rows, each beside the
    model's timed CPU hours (and the untimed span where runs kept no time)."""
    import json

    import pandas as pd

    mod = _module()
    projection = tmp_path / "gpu.json"
    projection.write_text(json.dumps([{"model": "m", "scored answers": 10,
                                       "projected GPU minutes": 8.5},
                                      {"model": "n", "scored answers": 5,
                                       "projected GPU minutes": 1.0}]))  # fmt: skip
    cost = pd.DataFrame({"model": ["m", "m", "n"], "wall_s": [3600.0, 1800.0, 720.0],
                         "untimed answer span s": [0.0, 360.0, 0.0]})  # fmt: skip
    mod.COUNTER = iter(range(1, 100))
    table = mod.gpu(cost, projection)
    assert "## T1. Cost on one GPU" in table and "Not a measurement." in table
    assert "| 1 | m | 10 | 8.5 | 1.5 h + 0.1 h untimed |" in table
    assert "| 2 | n | 5 | 1.0 | 0.2 h |" in table
    assert mod.gpu(cost, None) == ""  # no projection passed: no table


def test_the_named_contrasts_say_how_many_items_a_5_point_mde_needs(tmp_path):
    """The MDE scales as 1/sqrt(n): 1,100 items with an MDE of 6.8 points need at least
    1100 * (6.8 / 5)^2 = 2,034.6, so 2,035 items for 5; a contrast without an MDE shows none."""
    import pandas as pd

    mod = _module()
    row = {"holm family": "named contrasts", "contrast": 1,
           "test": "m: instruct - baseline, ambig bias", "estimate": -0.016, "ci_lo": -0.052,
           "ci_hi": 0.019, "p": 0.4, "p_adj": 1.0, "family_size": 14, "n_items": 1100,
           "unknown rate (condition / reference)": "34% / 19%",
           "outcome": "inconclusive"}  # fmt: skip
    rows = [{**row, "mde": 0.068}, {**row, "mde": float("nan")}]
    pd.DataFrame(rows).to_csv(tmp_path / "contrasts.csv", index=False)
    table = mod.contrasts(tmp_path)
    assert "| MDE x100 | n_items | items for MDE 5 (>=) |" in table
    assert "| 6.8 | 1100 | 2035 | 34% / 19% | inconclusive |" in table
    assert "|  | 1100 |  | 34% / 19% | inconclusive |" in table  # no MDE, no number


def test_readings_with_different_pair_counts_show_both(tmp_path):
    """'n pairs' is one count where the two readings of the orders agree, each where not."""
    import pandas as pd

    mod = _module()
    rows = [dict(model="m", readout="cloze", round=0, condition="instruct", group="overall",
                 context="ambig", metric="bias", orders=orders, n_pairs=n, diff=-0.1,
                 diff_lo=-0.2, diff_hi=0.0, p=0.05)
            for orders, n in (("original only", 132), ("combined", 120))]  # fmt: skip
    rows += [dict(rows[0], metric="accuracy"), dict(rows[1], metric="accuracy", n_pairs=132)]
    (tmp_path / "bbq").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "bbq" / "orders_paired.csv", index=False)
    lines = mod.orders_paired(tmp_path).splitlines()
    row = {line.split("|")[4].strip(): line for line in lines if line.startswith("| ")}
    assert "| 132 / 120 |" in row["bias"] and "| 132 |" in row["accuracy"]
