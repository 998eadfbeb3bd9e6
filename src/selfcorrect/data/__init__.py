"""Shipped benchmark data (BBQ, Winogender) with their licenses; see README.md here."""

from importlib.resources import files
from pathlib import Path


def data_dir() -> Path:
    return Path(str(files("selfcorrect") / "data"))
