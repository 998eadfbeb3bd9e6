"""Report rendering from a store filled by the fake backend: files, escaping, figures."""

from selfcorrect.benchmarks.bbq import BBQ
from selfcorrect.conditions import load_library
from selfcorrect.engine import Plan, execute
from selfcorrect.parsing import parse_bbq
from selfcorrect.report import report_dir
from selfcorrect.store import Store
from tests.fakes import FakeBackend


def test_report_files_and_escaping(tmp_path):
    b = BBQ()
    items = b.sample(b.items(["Age", "Religion"]), 12, 0)
    store = Store(tmp_path)
    store.add_items("bbq", b.item_table(items))
    run = store.start_run({"benchmark": "bbq"})
    lib = load_library()
    evil = ' (a) <script>alert("x")</script> & <img src=x onerror=1>'
    plan = Plan(
        "bbq",
        lib.resolve(["baseline", "instruct"], "bbq"),
        items,
        1,
        lib,
        readout="generate",
        parser=parse_bbq,
    )
    execute(store, run, "fake", FakeBackend(answer=evil), plan)
    store.update_run(run, {"benchmark": "bbq"}, "finished")
    store.close()
    rep = report_dir(tmp_path, n_boot=50)
    names = {p.name for p in rep.files}
    assert {
        "report.md",
        "report.html",
        "summary.csv",
        "flips.csv",
        "bbq_conditions.png",
        "bbq_conditions.svg",
        "manifest.json",
        "outcomes.csv",
    } <= names
    html = (tmp_path / "report" / "bbq" / "report.html").read_text()
    assert "<script" not in html and "onerror=1>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    pngs = {f.name for f in (tmp_path / "report" / "bbq").glob("*.png")}
    assert {"bbq_heatmap_ambig.png", "bbq_rounds.png"} <= pngs
    assert html.count("data:image/png;base64,") == len(pngs)  # all embedded, no network
    study = (tmp_path / "report" / "report.html").read_text()
    assert "Verdicts on the hypotheses" in study and "<script" not in study
    assert study.count("data:image/png;base64,") == len(pngs)
    assert set(rep.tables["verdicts"]["id"]) == {"H1", "H2", "H3", "H4", "H5", "H6", "G1", "G3"}
    assert "http://" not in html and "https://" not in html
    md = (tmp_path / "report" / "bbq" / "report.md").read_text()
    assert "Transcripts" in md and "Self-correction rounds" in md
    summary = rep.tables["bbq_summary"]
    assert (summary[summary.group == "overall"]["accuracy"] >= 0).all()
