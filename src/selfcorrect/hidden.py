"""Hidden states beside the results store: the residual stream at the answer position (the
token whose next-token distribution the readout reads), for every answer of a run with
--save-hidden. Safetensors files (memory-mappable, no pickle) under OUT/hidden/, one per stored
batch, keyed like the answers (model, benchmark, condition, readout, uid, round). A file is
written before its batch's store transaction, so a crash can leave states whose answers are
recomputed on resume; reading keeps the last copy of every key."""

from __future__ import annotations

import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

KEYS = ["model", "benchmark", "condition", "readout", "uid", "round"]


def parse_layers(spec: str, n_states: int) -> list[int]:
    """ "all", or comma-separated indices into the hidden states (0 = the embeddings, L = the
    last layer's output; negative counts from the end)."""
    if spec.strip() == "all":
        return list(range(n_states))
    out = []
    for part in spec.split(","):
        k = int(part.strip())
        if not -n_states <= k < n_states:
            raise ValueError(f"layer {k} outside 0..{n_states - 1}")
        out.append(k % n_states)
    return sorted(dict.fromkeys(out))


def model_folder(directory: str | Path, model: str) -> Path:
    """Where a model's states live under a results directory (a file-system-safe name)."""
    return Path(directory) / "hidden" / re.sub(r"[^A-Za-z0-9._-]+", "_", model)[:80]


class HiddenWriter:
    def __init__(self, directory: str | Path, run_id: str, model: str):
        self.dir = model_folder(directory, model)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = run_id
        self.count = len(list(self.dir.glob(f"{run_id}-*.safetensors")))

    def write(self, keys: list[tuple], states: np.ndarray, layers: list[int]) -> Path | None:
        """states: [n, layers, hidden]."""
        if not keys:
            return None
        from safetensors.numpy import save_file

        path = self.dir / f"{self.prefix}-{self.count:06d}.safetensors"
        tmp = path.with_suffix(".tmp")
        meta = {"keys": json.dumps([list(k) for k in keys]), "layers": json.dumps(layers)}
        save_file({"states": np.ascontiguousarray(states.astype(np.float16))}, str(tmp), meta)
        os.replace(tmp, path)  # whole or absent
        self.count += 1
        return path


def hidden_folders(directory: str | Path) -> list[Path]:
    """One folder of states per model (models differ in layers and width)."""
    root = Path(directory) / "hidden"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def load_hidden(directory: str | Path, folder: Path | None = None,
                ) -> tuple[pd.DataFrame, np.ndarray, list[int]]:  # fmt: skip
    """(keys, states [n, layers, hidden] float32, layers) of the stored states of one model's
    folder (default: the first); the last copy of a key wins. Empty when the run saved none.
    Files of another layer selection than the first one read are kept apart (not read)."""
    from safetensors import safe_open

    folders = hidden_folders(directory)
    folder = folder or (folders[0] if folders else None)
    files = sorted(folder.glob("*.safetensors")) if folder else []
    keys, arrays, layers, skipped = [], [], None, 0
    for f in files:
        with safe_open(str(f), framework="numpy") as fh:
            meta = fh.metadata()
            these = json.loads(meta["layers"])
            if layers is not None and these != layers:
                skipped += 1
                continue
            layers = these
            keys += json.loads(meta["keys"])
            arrays.append(fh.get_tensor("states").astype(np.float32))
    if skipped:
        warnings.warn(f"{folder}: {skipped} file(s) of another layer selection than "
                      f"{layers} not read", stacklevel=2)  # fmt: skip
    if not arrays:
        return pd.DataFrame(columns=KEYS), np.zeros((0, 0, 0), np.float32), []
    df = pd.DataFrame(keys, columns=KEYS)
    states = np.concatenate(arrays)
    keep = ~df.duplicated(KEYS, keep="last").to_numpy()
    return df[keep].reset_index(drop=True), states[keep], layers


def estimate_bytes(n_answers: int, n_layers: int, hidden_size: int) -> int:
    return n_answers * n_layers * hidden_size * 2  # float16
