"""`selfcorrect analyze hidden DIR`: per model x condition x layer, from the states stored by
--save-hidden and the BBQ answers they belong to (log-probability readout):

- shift: mean norm of the round-to-round change h(r+1) - h(r) at the answer position;
- cosine: mean cosine of that change with the difference-in-means direction "biased answer
  minus unbiased answer" (answers with a target option; fitted on half of the templates,
  measured on the other half), with a bootstrap CI over the held-out templates (for the one
  fitted direction: the uncertainty of fitting it is not in that CI);
- probe: held-out accuracy of a logistic probe predicting whether the answer read at that state
  is the biased one, beside the majority-class accuracy of the same test rows; its CI resamples
  the held-out templates (an item's rounds and a template's items are not independent).

Each model's states are read from its own folder (models differ in layers and width).

Tables and figures go to DIR/report/hidden/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from selfcorrect.hidden import hidden_folders, load_hidden
from selfcorrect.metrics.probes import cosines, diff_in_means, fit_probe, halves, predict
from selfcorrect.metrics.stats import bootstrap, ratio
from selfcorrect.report.figures import LINE_STYLES, error_bars, legend_below, pyplot, save_figure
from selfcorrect.store import Store


def _joined(keys: pd.DataFrame, out: pd.DataFrame) -> pd.DataFrame:
    """The states' keys with their answers (row numbers into the states in _row)."""
    if keys.empty:
        return keys
    meta = out[["model", "benchmark", "condition", "readout", "uid", "round", "pred",
                "target_loc", "category", "question_index"]]  # fmt: skip
    keys = keys.assign(_row=np.arange(len(keys))).merge(meta, on=list(keys.columns[:6]))
    # exact-transition branches answer after a forced round 0: they are no round of a
    # conversation, so they enter neither the shifts nor the probes (docs/rounds.md)
    keys = keys[keys["target_loc"].notna() & keys["pred"].notna() & (keys["readout"] != "branch")]
    keys["biased"] = (keys["pred"].astype(int) == keys["target_loc"].astype(int)).to_numpy()
    keys["template"] = keys["category"] + ":" + keys["question_index"].astype(str)
    return keys.reset_index(drop=True)


def _template_ci(groups, values: np.ndarray, seed: int) -> tuple[float, float]:
    """95% CI of the mean of `values` resampling templates (clusters) with their rows."""
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    codes = pd.factorize(np.asarray(groups, dtype=object)[ok])[0]
    if codes.size == 0:
        return (np.nan, np.nan)
    counts = np.column_stack([np.bincount(codes), np.bincount(codes, weights=values[ok])])
    _, ci, _ = bootstrap(counts, ratio, 1000, seed)
    return ci


def _layer_row(part, x, layer, seed) -> dict:
    fit = halves(part["template"])
    y = part["biased"].to_numpy(bool)
    row = {"layer": layer, "n_fit": int(fit.sum()), "n_test": int((~fit).sum())}
    if y[fit].all() or not y[fit].any() or (~fit).sum() == 0:
        return row
    direction = diff_in_means(x[fit], y[fit])
    probe = fit_probe(x[fit], y[fit])
    hit = predict(probe, x[~fit]) == y[~fit]
    lo, hi = _template_ci(part["template"].to_numpy()[~fit], hit, seed)
    majority = max(y[~fit].mean(), 1 - y[~fit].mean())
    row |= {"probe_accuracy": float(hit.mean()), "probe_lo": lo, "probe_hi": hi,
            "majority_accuracy": float(majority)}  # fmt: skip
    shifts, groups = _shifts(part, x)
    if len(shifts):
        test = ~halves(groups)
        cos = cosines(shifts[test], direction)
        lo, hi = _template_ci(np.asarray(groups, dtype=object)[test], cos, seed)
        row |= {"shift_norm": float(np.linalg.norm(shifts, axis=1).mean()),
                "cosine": float(np.nanmean(cos)) if len(cos) else np.nan,
                "cosine_lo": lo, "cosine_hi": hi, "n_shifts": int(len(cos))}  # fmt: skip
    return row


def _shifts(part: pd.DataFrame, x: np.ndarray):
    """h(r+1) - h(r) for every item with consecutive rounds, and its template."""
    idx = {(u, r): k for k, (u, r) in enumerate(zip(part["uid"], part["round"], strict=True))}
    out, groups = [], []
    for (u, r), k in idx.items():
        nxt = idx.get((u, r + 1))
        if nxt is not None:
            out.append(x[nxt] - x[k])
            groups.append(part["template"].iloc[k])
    return (np.array(out), groups) if out else (np.zeros((0, x.shape[1])), [])


def analyze(directory: str | Path, seed: int = 0) -> pd.DataFrame:
    if not hidden_folders(directory):
        return pd.DataFrame()
    store = Store(directory, read_only=True)
    try:
        out = store.outcomes("bbq")
    finally:
        store.close()
    rows = []
    for folder in hidden_folders(directory):
        keys, states, layers = load_hidden(directory, folder)
        keys = _joined(keys, out)
        for (model, cond, readout), part in keys.groupby(["model", "condition", "readout"]):
            part = part.reset_index(drop=True)
            for j, layer in enumerate(layers):
                x = states[part["_row"].to_numpy(), j]
                rows.append({"model": model, "condition": cond, "readout": readout,
                             **_layer_row(part, x, layer, seed)})  # fmt: skip
    return pd.DataFrame(rows)


def write(directory: str | Path, table: pd.DataFrame) -> list[Path]:
    out = Path(directory) / "report" / "hidden"
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "hidden.csv", index=False)
    files = [out / "hidden.csv"]
    if table.empty:
        return files
    cols = [c for c in ("probe_accuracy", "cosine", "shift_norm") if c in table]
    if not cols:  # too few answers of either kind to fit anything
        return files
    return files + _figure(table, cols, out)


TITLES = {"probe_accuracy": "probe accuracy (held-out; x: majority class)",
          "cosine": "cosine of the round shift with the bias direction",
          "shift_norm": "norm of the round shift"}  # fmt: skip


def _figure(table: pd.DataFrame, cols: list[str], out: Path) -> list[Path]:
    """One row of panels per readout (a line through two readouts' states joins different
    answers), a colour per model, a line style per condition, 95% CIs where the table has
    them, and each probe line's own majority-class accuracy as x marks."""
    plt = pyplot()
    readouts = list(dict.fromkeys(table["readout"]))
    models = sorted(table["model"].unique())
    conds = list(dict.fromkeys(table["condition"]))
    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(len(readouts), len(cols), squeeze=False,
                             figsize=(5 * len(cols), 3.4 * len(readouts) + 0.8))  # fmt: skip
    for row, readout in enumerate(readouts):
        for ax, col in zip(axes[row], cols, strict=True):
            part = table[table["readout"] == readout]
            for (model, cond), g in part.groupby(["model", "condition"]):
                g = g.sort_values("layer")
                color = colors[models.index(model) % len(colors)]
                y = g[col].to_numpy(float)
                lo, hi = (f"{col.split('_')[0]}_lo", f"{col.split('_')[0]}_hi")
                err = error_bars(y, g[lo], g[hi]) if lo in g and hi in g else None
                ax.errorbar(g["layer"], y, yerr=err, fmt="o",
                            ls=LINE_STYLES[conds.index(cond) % len(LINE_STYLES)], ms=3, lw=1,
                            capsize=2,
                            color=color, label=f"{model} / {cond}")  # fmt: skip
                if col == "probe_accuracy":
                    ax.plot(g["layer"], g["majority_accuracy"], "x", color=color, ms=6)
            ax.set_xlabel("layer (0 = embeddings)")
            ax.set_title(f"{TITLES[col]}, {readout} readout", fontsize=8)
            ax.grid(alpha=0.3)
    legend_below(fig)
    return save_figure(fig, out, "hidden_layers")
