"""The dequantised cache: a GGUF file loaded once through transformers (slow: every tensor is
dequantised) and saved as bf16 safetensors under the user cache, keyed by the file's sha256,
so later loads take about a second."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from selfcorrect.errors import SelfCorrectError
from selfcorrect.registry import ResolvedModel, cache_dir

_CACHE_FORMAT = 1  # bump when the layout of the dequantised cache changes


def quiet_transformers():
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="transformers")


def dequantised_copy(resolved: ResolvedModel, dtype) -> Path:
    """Load a GGUF once (slow: dequantises every tensor), save model and tokenizer as
    safetensors under the cache keyed by the file's sha256; later loads take about a second.
    Written into a temporary folder and renamed, so an interrupted save leaves nothing behind."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = cache_dir() / "hf" / f"{resolved.sha256[:24]}-v{_CACHE_FORMAT}"
    if (target / "selfcorrect.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    src, name = str(resolved.path.parent), resolved.path.name
    try:
        tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.bfloat16)
    except Exception as exc:  # transformers raises many types for a bad file
        raise SelfCorrectError(f"cannot load GGUF {resolved.path}: {exc}") from None
    model.hf_quantizer = None  # weights are plain tensors now; save_pretrained needs this
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".tmp-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "selfcorrect.json").write_text(
            json.dumps({"source": str(resolved.path), "sha256": resolved.sha256})
        )
        os.replace(tmp, target)
    except OSError:
        if target.is_dir():  # another process won the race
            return target
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
