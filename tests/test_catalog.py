"""Every registered benchmark has every part; a kit that lacks one is refused when it is made."""

import json

import pandas as pd
import pytest

from selfcorrect import verdicts
from selfcorrect.catalog import KITS, BenchmarkKit, get_kit
from selfcorrect.conditions import load_library
from selfcorrect.errors import SelfCorrectError
from selfcorrect.report.section import Section


def outcomes_for(kit, n=24):
    """Stored-like outcomes for a few items: every answer option 0, one unparseable."""
    bench = kit.benchmark
    items = bench.variants(bench.sample(bench.items(), n, 0), "none")
    table = bench.item_table(items)
    rows = []
    for cond in ("baseline", "instruct", "cot"):
        for k, it in enumerate(items):
            c = len(it.candidates)
            probs = json.dumps([0.9 if j == k % c else 0.1 / (c - 1) for j in range(c)])
            rows.append({"model": "m", "benchmark": kit.name, "condition": cond,
                         "readout": "logprob", "round": 0, "uid": it.uid,
                         "pred": None if k == 0 else k % len(it.candidates),
                         "parse_status": "ok", "probs": probs})  # fmt: skip
    df = pd.DataFrame(rows).merge(table, on="uid")
    df["pred"] = df["pred"].astype("Int64")
    return df


@pytest.mark.parametrize("name", sorted(KITS))
def test_every_kit_is_complete_and_works_end_to_end(name, tmp_path):
    kit = get_kit(name)
    assert kit.name == name
    assert kit.family in load_library().conditions["baseline"].steps  # its library section
    items = kit.benchmark.sample(kit.benchmark.items(), 6, 0)
    assert items and all(it.candidates for it in items)
    pred, status = kit.benchmark.parse(items[0], "")
    assert pred is None and status == "empty"
    tables = kit.tables(outcomes_for(kit), n_boot=10, seed=0, reference="baseline")
    assert not tables["summary"].empty
    assert not kit.section.headline(tables["summary"]).empty
    assert kit.section.blocks(tables)
    assert all(p.is_file() for p in kit.section.figures(tables, {}, tmp_path))


def test_verdict_inputs_come_from_registered_kits():
    for bench, names in verdicts.INPUTS.items():
        kit = get_kit(bench)
        df = outcomes_for(kit)
        tables = kit.tables(df, n_boot=0, seed=0, reference="baseline")
        assert set(names) <= set(tables), bench
    items = get_kit("bbq").verdict_items(outcomes_for(get_kit("bbq")))
    assert {"uid", "pred", "gold", "template"} - {"template"} <= set(items.columns)


def test_a_kit_missing_a_part_is_refused():
    bbq = get_kit("bbq")
    with pytest.raises(TypeError, match="section.figures"):
        BenchmarkKit(bbq.benchmark, bbq.tables, Section(bbq.section.headline, bbq.section.blocks,
                                                        None))  # fmt: skip

    class NoParser:
        name, family, description = "x", "bbq", "x"
        categories = items = sample = item_table = staticmethod(lambda *a: [])

    with pytest.raises(TypeError, match="parse"):
        BenchmarkKit(NoParser(), bbq.tables, bbq.section)


def test_unknown_benchmark_and_scoring_without_predictions():
    with pytest.raises(SelfCorrectError, match="unknown benchmark 'mmlu'.*bbq"):
        get_kit("mmlu")
    with pytest.raises(SelfCorrectError, match="not available for winogender"):
        get_kit("winogender").read_predictions("x.csv")
