"""Report rendering from a store filled by the fake backend: files, escaping, figures, and
the study report opened in headless Chromium."""

import base64
import io
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

from selfcorrect.api import report as report_dir
from selfcorrect.benchmarks.bbq import BBQ
from selfcorrect.benchmarks.bbq import parse_answer as parse_bbq
from selfcorrect.conditions import load_library
from selfcorrect.engine import Job, execute
from selfcorrect.store import Store
from tests.fakes import FakeBackend


def _evil_store(tmp_path):
    """Two conditions, one feedback round, model text full of markup."""
    b = BBQ()
    items = b.sample(b.items(["Age", "Religion"]), 12, 0)
    store = Store(tmp_path)
    run = store.register_run({"benchmark": "bbq"}, "bbq", b.item_table(items), [], [])
    lib = load_library()
    evil = ' (a) <script>alert("x")</script> & <img src=x onerror=1>'
    plan = Job(
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


def test_report_files_and_escaping(tmp_path):
    _evil_store(tmp_path)
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
    assert set(rep.tables["verdicts"]["id"]) == {
        "H1",
        "H2",
        "H3",
        "H4",
        "H5",
        "H6",
        "G1",
        "G3",
        "G5",
    }
    assert "http://" not in html and "https://" not in html
    md = (tmp_path / "report" / "bbq" / "report.md").read_text()
    assert "Transcripts" in md and "Self-correction rounds" in md
    summary = rep.tables["bbq_summary"]
    assert (summary[summary.group == "overall"]["accuracy"] >= 0).all()


def _chromium() -> str:
    """Headless Chromium from the system packages, installed on first use where possible."""
    names = ("chromium", "chromium-browser", "google-chrome")
    found = next((shutil.which(n) for n in names if shutil.which(n)), None)
    if found is None and shutil.which("apt-get") and os.geteuid() == 0:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
        if subprocess.run(cmd, env=env, capture_output=True, timeout=1200).returncode:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
            subprocess.run(cmd, env=env, capture_output=True, timeout=1200)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("headless Chromium is not installed and cannot be (needs root and apt-get)")
    return found


@pytest.mark.browser
def test_study_report_renders_in_headless_chromium(tmp_path):
    import matplotlib.image as mpimg

    _evil_store(tmp_path)
    report_dir(tmp_path, n_boot=50)
    page = tmp_path / "report" / "report.html"
    run = subprocess.run(
        [_chromium(), "--headless=new", "--no-sandbox", "--disable-gpu",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no console errors, warnings or messages at all
    dom = run.stdout
    assert "Verdicts on the hypotheses" in dom and "<script" not in dom
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', dom)
    assert {"bbq/bbq_conditions.png", "bbq/bbq_heatmap_ambig.png"} <= {a for a, _ in images}
    for _, data in images:  # every figure decodes as a real image
        pixels = mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png")
        assert pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_rescoring_with_a_bias_variant_needs_only_the_store(tmp_path):
    from selfcorrect import api

    _evil_store(tmp_path)
    rep = api.report(tmp_path, n_boot=20, bias_variant="helm")
    assert "'helm' (a named alternative" in (tmp_path / "report" / "report.md").read_text()
    assert not rep.tables["bbq_summary"].empty


def test_the_figure_legend_holds_every_panels_labels_once():
    """A series drawn only in a later panel (a model with no row under one readout) is in the
    legend too; a label drawn in several panels is listed once, in the order first drawn."""
    from selfcorrect.report.figures import legend_below, pyplot

    fig, axes = pyplot().subplots(1, 2)
    axes[0].plot([0, 1], label="a")
    axes[1].plot([0, 1], label="a")
    axes[1].plot([1, 0], label="b")
    legend_below(fig)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b"]
    pyplot().close(fig)


def test_error_bars_never_go_negative_and_missing_cis_draw_none():
    """An exact floor's CI can sit a float hair inside its estimate (accuracy 0.0, lower
    bound 2.8e-17): matplotlib refuses negative error bars, which stopped a whole report."""
    import numpy as np

    from selfcorrect.report.figures import error_bars

    below, above = error_bars(np.array([0.0, 50.0, 20.0]), [2.8e-17, 0.4, np.nan],
                              [0.39, 0.7, np.nan], scale=100)  # fmt: skip
    assert below.tolist() == [0.0, 10.0, 0.0] and np.allclose(above, [39.0, 20.0, 0.0])


def test_cost_table_sums_resumed_runs_of_one_part_per_model(tmp_path):
    """Two commands of one part (the second resumes: nothing left but its timing) and one
    other part: two rows per model, wall summed, answers counted per part."""
    from selfcorrect import api
    from selfcorrect.report.study import cost_table

    common = {"limit": 8, "bootstrap": 0, "permute": "none", "out": tmp_path, "progress": False}
    api.run("fake:a", conditions="baseline,instruct", **common)
    api.run("fake:a", conditions="baseline,instruct", **common)
    api.run("fake:a", conditions="s2", batch_size=2, **common)  # stored in 4 batches
    store = Store(tmp_path, create=False, read_only=True)
    table = cost_table(store).set_index("part")
    store.close()
    assert len(table) == 2 and set(table["model"]) == {"fake:a"}
    both = table.loc[[p for p in table.index if "baseline, instruct" in p][0]]
    assert both["runs"] == 2 and both["answers"] == 16 and both["untimed runs"] == 0
    assert both["wall_s"] > 0 and re.fullmatch(r"\d+:\d\d:\d\d", both["wall"])
    assert both["peak RSS GB"] > 0 and set(table["peak scope"]) == {"run"}
    assert table.loc[[p for p in table.index if ": s2;" in p][0]]["answers"] == 8
    # a run killed without timing: its answers' first-to-last span stands in (a lower bound)
    import json
    import sqlite3

    with sqlite3.connect(tmp_path / "results.sqlite") as c:
        run, text = c.execute("SELECT run_id, manifest FROM runs ORDER BY started DESC").fetchone()
        m = json.loads(text)
        del m["wall_s"]
        c.execute("UPDATE runs SET manifest=? WHERE run_id=?", (json.dumps(m), run))
        lo, hi = c.execute("SELECT MIN(created), MAX(created) FROM answers WHERE run_id=?",
                           (run,)).fetchone()  # fmt: skip
        # a run of a store from before peaks were per run: its part's peak is the process's
        first, text = c.execute("SELECT run_id, manifest FROM runs ORDER BY started").fetchone()
        m = json.loads(text)
        del m["peak_rss_scope"]
        c.execute("UPDATE runs SET manifest=? WHERE run_id=?", (json.dumps(m), first))
    store = Store(tmp_path, create=False, read_only=True)
    table = cost_table(store).set_index("part")
    store.close()
    s2 = table.loc[[p for p in table.index if ": s2;" in p][0]]
    assert s2["untimed runs"] == 1 and s2["wall_s"] == 0
    assert table.loc[[p for p in table.index if "baseline, instruct" in p][0]]["peak scope"] == (
        "process"
    )
    assert hi > lo and s2["untimed answer span s"] == pytest.approx(hi - lo)


def test_the_ci_of_two_templates_spans_their_values_not_a_row_count():
    """The hidden-state analysis' CIs resample templates, not rows (an item's rounds and a
    template's items are not independent draws)."""
    from selfcorrect.report.hidden import _template_ci

    groups = ["t1"] * 100 + ["t2"] * 100
    values = np.r_[np.zeros(100), np.ones(100)]
    lo, hi = _template_ci(groups, values, seed=0)
    # 200 independent rows would give about [0.43, 0.57]; two templates can give 0 or 1
    assert lo == 0.0 and hi == 1.0
    many = [f"t{k}" for k in range(200)]
    lo, hi = _template_ci(many, values, seed=0)
    assert 0.4 < lo < 0.45 and 0.55 < hi < 0.6
    assert np.isnan(_template_ci([], np.array([]), seed=0)[0])


def test_the_readout_comparison_has_a_figure(tmp_path):
    """Items asked under every option order: the report draws each readout read both ways."""
    from selfcorrect import api
    from tests.fakes import BEHAVIOUR  # noqa: F401  (registers the fake backend)

    api.run("fake:a", conditions="baseline,instruct", limit=24, out=tmp_path, bootstrap=20,
            progress=False, permute="cyclic", readout="logprob,cloze")  # fmt: skip
    page = (tmp_path / "report" / "bbq" / "report.md").read_text()
    assert (tmp_path / "report" / "bbq" / "bbq_readouts.png").is_file()
    assert page.index("Readout comparison") < page.index("bbq_readouts.png")


def test_the_size_and_condition_figures_draw_one_readout(tmp_path, monkeypatch):
    """A store read with several readouts (the study: content, letter, generation) must not
    join them in one line per condition (or crowd one panel with every model x readout): the
    figures draw the readout most model x condition pairs have, and say which."""
    import pandas as pd

    from selfcorrect.report import bbq_figures

    rows = [{"model": m, "condition": c, "readout": r, "round": 0, "group": "overall",
             "context": ctx, "n": 100, "bias": b, "bias_lo": b - 0.1, "bias_hi": b + 0.1,
             "accuracy": 0.5, "accuracy_lo": 0.4, "accuracy_hi": 0.6}
            for m, b0 in (("small", 0.0), ("large", 0.2))
            for r, conds in (("cloze", ("baseline", "instruct")), ("logprob", ("baseline",)))
            for c in conds
            for ctx in ("ambig", "disambig")
            for b in [b0 + (0.5 if r == "logprob" else 0.0)]]  # fmt: skip
    summary = pd.DataFrame(rows)
    assert bbq_figures.main_readout(summary) == "cloze"
    drawn = []
    monkeypatch.setattr(bbq_figures, "save_figure", lambda fig, out, name: drawn.append(fig))
    models = {"small": {"params": 1e8}, "large": {"params": 1e9}}
    bbq_figures.size_figure(summary, models, tmp_path)
    ax = drawn[0].axes[0]  # ambiguous bias
    assert "cloze readout" in ax.get_title()
    lines = [bars.lines[0] for bars in ax.containers]  # each errorbar's data line
    assert len(lines) == 2  # baseline and instruct, two models each
    for line in lines:
        assert list(np.round(line.get_ydata(), 6)) == [0.0, 20.0]  # the cloze values only
    drawn.clear()
    bbq_figures.condition_figure(summary, tmp_path)  # conditions on x, one series per model
    ax = drawn[0].axes[0]
    assert "cloze readout" in ax.get_title() and len(ax.containers) == 2
    assert [list(np.round(b.lines[0].get_ydata(), 6)) for b in ax.containers] == [
        [20.0, 20.0], [0.0, 0.0]]  # fmt: skip


def test_the_rounds_figure_has_a_row_per_readout_and_a_line_per_model_and_condition(
    tmp_path, monkeypatch
):
    """Entropy, p(gold) and ECE per round: one row of panels per readout (the cloze length
    normalisations left to the tables), one line per model x condition; a run read once has
    no line."""
    import pandas as pd

    from selfcorrect.report import rounds

    level = {"cloze": 0.5, "cloze/byte": 0.9, "logprob": 0.2}  # each readout its own value
    rows = [{"model": m, "condition": c, "readout": r, "round": k, "n": 10,
             **{f"{x}{s}": v + level[r] - 0.5 for x in ("entropy", "p_gold", "ece")
                for s, v in (("", 0.5), ("_lo", 0.4), ("_hi", 0.6))}}
            for m in ("a", "b") for c in ("baseline", "instruct")
            for r in level for k in range(3)]  # fmt: skip
    rows += [{**rows[0], "model": "once"}]  # round 0 only
    drawn = []
    monkeypatch.setattr(rounds, "save_figure", lambda fig, out, name: drawn.append(fig) or [])
    rounds.figures({"rounds_uncertainty": pd.DataFrame(rows)}, tmp_path)
    axes = drawn[0].axes
    assert len(axes) == 6  # cloze and logprob x three metrics
    assert "cloze readout" in axes[0].get_title() and "logprob readout" in axes[3].get_title()
    assert "ECE" in axes[2].get_title()
    assert all(len(ax.containers) == 4 for ax in axes)  # a/b x baseline/instruct
    for ax, readout in zip(axes, ["cloze"] * 3 + ["logprob"] * 3, strict=True):
        for bars in ax.containers:  # three rounds of this readout's values, no other's
            assert list(bars.lines[0].get_xdata()) == [0, 1, 2]
            assert np.allclose(bars.lines[0].get_ydata(), level[readout])
    drawn.clear()
    once = pd.DataFrame(rows[-1:]).assign(round=1)  # rounds, but no run with two of its own
    assert rounds.figures({"rounds_uncertainty": once}, tmp_path) == [] and not drawn


def test_the_category_heatmap_draws_one_readout_one_panel_per_model(tmp_path, monkeypatch):
    """A cell must not take whichever readout came first: the heatmap reads the main
    readout, says which, and gives each model its own panel."""
    import pandas as pd

    from selfcorrect.report import bbq_figures

    rows = [{"model": m, "readout": r, "round": 0, "condition": c, "group": g,
             "context": "ambig", "metric": "bias", "n_pairs": 10,
             "diff": d + shift, "diff_lo": d + shift - 0.05, "diff_hi": d + shift + 0.05}
            for m, shift in (("a", 0.0), ("b", 0.1))
            for r, d in (("cloze/byte", 0.5), ("cloze", 0.1), ("cloze/token", -0.5))
            for c in ("instruct", "s4") for g in ("Age", "Religion")]  # fmt: skip
    rows += [{**rows[0], "readout": "logprob", "diff": 0.9}]  # one pair only: not the main
    drawn = []
    monkeypatch.setattr(bbq_figures, "save_figure", lambda fig, out, name: drawn.append(fig))
    bbq_figures.category_heatmap(pd.DataFrame(rows), tmp_path)
    fig = drawn[0]
    assert "cloze readout" in fig._suptitle.get_text()
    panels = [ax for ax in fig.axes if ax.images]
    assert [ax.get_title() for ax in panels] == ["a", "b"]
    for ax, value in zip(panels, (10, 20), strict=True):  # the cloze readout's, x100
        assert np.allclose(ax.images[0].get_array(), value)
        assert [t.get_text() for t in ax.texts] == [f"{value}*"] * 4  # CI excludes 0


def test_the_hidden_state_figure_has_a_row_per_readout(tmp_path, monkeypatch):
    """One line per model x condition within a readout (a line through two readouts' states
    joined different answers), the probe's CI, and each line's own majority class."""
    import pandas as pd

    from selfcorrect.report import hidden

    rows = [{"model": m, "condition": c, "readout": r, "layer": layer, "n_fit": 50,
             "n_test": 50, "probe_accuracy": 0.7, "probe_lo": 0.6, "probe_hi": 0.8,
             "majority_accuracy": majority, "shift_norm": 3.0, "cosine": 0.1,
             "cosine_lo": 0.05, "cosine_hi": 0.15, "n_shifts": 40}
            for m, depth, majority in (("a", 24, 0.55), ("b", 30, 0.65))
            for c in ("baseline", "instruct")
            for r in ("cloze", "logprob") for layer in (14, depth)]  # fmt: skip
    drawn = []
    monkeypatch.setattr(hidden, "save_figure", lambda fig, out, name: drawn.append(fig) or [])
    hidden.write(tmp_path, pd.DataFrame(rows))
    axes = drawn[0].axes
    assert len(axes) == 6 and "logprob readout" in axes[3].get_title()
    for ax in axes:
        assert len(ax.containers) == 4  # a/b x baseline/instruct, two layers each
        assert all(len(b.lines[0].get_xdata()) == 2 for b in ax.containers)
    probe = axes[0]
    assert probe.containers[0].lines[0].get_ydata().tolist() == [0.7, 0.7]
    assert all(bars.has_yerr for bars in probe.containers)  # the probe's CI
    marks = [line for line in probe.get_lines() if line.get_marker() == "x"]
    # each line's own majority class, drawn at its own layers
    assert sorted((tuple(m.get_xdata()), tuple(m.get_ydata())) for m in marks) == [
        ((14, 24), (0.55, 0.55))] * 2 + [((14, 30), (0.65, 0.65))] * 2  # fmt: skip


def test_the_category_table_holds_one_readouts_numbers():
    """Five readouts share model x condition in the study: a per-category cell must hold the
    main readout's bias, not whichever readout's row came first."""
    import pandas as pd

    from selfcorrect.report.bbq import category_table

    rows = [{"model": "m", "condition": c, "readout": r, "round": 0, "group": "Age",
             "context": "ambig", "bias": b, "bias_lo": b - 0.1, "bias_hi": b + 0.1}
            for r, b, conds in (("cloze/byte", 0.5, ("baseline",)),
                                ("cloze", 0.1, ("baseline", "instruct")))
            for c in conds]  # fmt: skip
    table = category_table(pd.DataFrame(rows), "ambig")
    assert table.loc[0, "m / baseline / r0"].startswith("10.0 [")
