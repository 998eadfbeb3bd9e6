"""Inference engines behind one interface (base.py), found by name in a lazy registry: a
backend's module is imported only when it is used. Adding a backend: one module and one
line in _BACKENDS (or `register_backend` at run time, e.g. a test's fake)."""

from __future__ import annotations

import importlib

from selfcorrect.backends.base import (
    Backend,
    BackendClass,
    Conversation,
    LoadOptions,
    Sampling,
    ScoreResult,
    render_plain,
)
from selfcorrect.errors import unknown_choice
from selfcorrect.registry import ResolvedModel, resolve

DEFAULT_BACKEND = "transformers"
# name -> "module:Class" (imported on first use) or the class itself
_BACKENDS: dict[str, str | type] = {
    "transformers": "selfcorrect.backends.transformers.backend:TransformersBackend",
    "llamacpp": "selfcorrect.backends.llamacpp:LlamaCppBackend",
    "openai": "selfcorrect.backends.openai:OpenAIBackend",
}
# model-name prefix -> backend name ("openai:NAME" is a served model)
_PREFIXES: dict[str, str] = {"openai:": "openai"}


def register_backend(name: str, target: str | type, prefix: str | None = None) -> None:
    """Add a backend (a class, or "module:Class"); with `prefix`, model names starting with
    it select this backend."""
    _BACKENDS[name] = target
    if prefix:
        _PREFIXES[prefix] = name


def selectable() -> list[str]:
    """Backends chosen with --backend (the others are chosen by a model-name prefix)."""
    return [b for b in _BACKENDS if b not in _PREFIXES.values()]


def backend_class(name: str) -> type[BackendClass]:
    if name not in _BACKENDS:
        raise unknown_choice("backend", name, selectable())
    target = _BACKENDS[name]
    if isinstance(target, str):
        module, cls = target.split(":")
        target = _BACKENDS[name] = getattr(importlib.import_module(module), cls)
    return target


def backend_for(model: str, default: str = DEFAULT_BACKEND) -> tuple[str, bool]:
    """(the backend that runs `model`, whether its name's prefix chose it)."""
    for prefix, name in _PREFIXES.items():
        if model.startswith(prefix):
            return name, True
    return default, False


def resolve_model(model: str, default: str, options: LoadOptions) -> ResolvedModel:
    """What a model name stands for, without loading it: a prefixed name is resolved by its
    backend, anything else by the model registry (packaged names, .gguf files, HF folders)."""
    name, prefixed = backend_for(model, default)
    return backend_class(name).resolve(model, options) if prefixed else resolve(model)


def load_backend(name: str, resolved: ResolvedModel, options: LoadOptions) -> Backend:
    return backend_class(name).from_options(resolved, options)


__all__ = [
    "DEFAULT_BACKEND", "Backend", "BackendClass", "Conversation", "LoadOptions", "Sampling",
    "ScoreResult", "backend_class", "backend_for", "load_backend", "register_backend",
    "render_plain", "resolve_model", "selectable",
]  # fmt: skip
