"""Inference engines behind one interface (see base.py)."""

from selfcorrect.backends.base import Backend, Conversation, Sampling, ScoreResult, render_plain

BACKENDS = ("transformers", "llamacpp")

__all__ = ["BACKENDS", "Backend", "Conversation", "Sampling", "ScoreResult", "render_plain"]
