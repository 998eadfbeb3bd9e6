"""The plotting helpers every figure uses: a headless pyplot and PNG + SVG output."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    # labels carry model and condition names: "$...$" must stay text, not math to parse
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


LINE_STYLES = ("-", "--", ":", "-.")  # one per condition, where colour marks the model


def legend_below(fig, ncol: int = 4) -> None:
    """One legend for the whole figure (every panel's labels, each once, in the order first
    drawn), below the panels where it hides no point; the panels are laid out above it."""
    seen: dict = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(label, handle)
    labels, handles = list(seen), list(seen.values())
    fig.legend(handles, labels, loc="lower center", ncol=min(ncol, max(1, len(labels))),
               fontsize=7, frameon=False)  # fmt: skip
    rows = -(-len(labels) // ncol)
    fig.tight_layout(rect=(0, min(0.5, (0.2 * rows + 0.15) / fig.get_size_inches()[1]), 1, 1))


def save_figure(fig, out: Path, stem: str) -> list[Path]:
    paths = [out / f"{stem}.png", out / f"{stem}.svg"]
    for p in paths:
        fig.savefig(p, dpi=130)
    pyplot().close(fig)
    return paths


def error_bars(y, lo, hi, scale: float = 1.0) -> list:
    """matplotlib's yerr for an estimate y (already scaled) and its CI lo..hi (unscaled):
    distances below and above, 0 where the CI is missing or (by float rounding of an exact
    floor) a hair inside the estimate."""
    import numpy as np

    y = np.asarray(y, dtype=float)
    below = y - np.asarray(lo, dtype=float) * scale
    above = np.asarray(hi, dtype=float) * scale - y
    return [np.clip(np.nan_to_num(below), 0, None), np.clip(np.nan_to_num(above), 0, None)]
