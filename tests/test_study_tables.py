"""docs/results/tables.py: the study README's tables are generated from a report, numbered,
with CIs, and a partial study (some benchmarks missing) still gets its tables."""

import importlib.util
from pathlib import Path

from selfcorrect import api
from tests.fakes import BEHAVIOUR  # noqa: F401  (registers the fake backend)

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "results" / "tables.py"


def test_tables_from_a_small_report(tmp_path):
    spec = importlib.util.spec_from_file_location("study_tables", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    api.run("fake:a", conditions="baseline,instruct,oracle", limit=24, out=tmp_path,
            bootstrap=50, progress=False, permute="cyclic", rounds=1)  # fmt: skip
    text = mod.tables(tmp_path / "report", tmp_path)
    titles = [line for line in text.splitlines() if line.startswith("## T")]
    assert [t.split(".")[0] for t in titles] == [f"## T{k}" for k in range(1, len(titles) + 1)]
    assert any("Validity gate" in t for t in titles) and any("Cost" in t for t in titles)
    assert not any("Law school" in t for t in titles)  # no law answers: no law table
    row = next(line for line in text.splitlines() if line.startswith("| 1 | fake:a | baseline"))
    assert "[" in row  # estimates carry their CI
