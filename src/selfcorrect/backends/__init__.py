"""Inference engines behind one interface (see base.py)."""

from selfcorrect.backends.base import Backend, Conversation, ScoreResult, render_plain

BACKENDS = ("transformers",)

__all__ = ["BACKENDS", "Backend", "Conversation", "ScoreResult", "render_plain"]
