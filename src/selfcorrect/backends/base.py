"""The small contract between the engine and every inference engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Conversation:
    """Finished turns plus the prefilled start of the assistant turn being written."""

    messages: tuple[tuple[str, str], ...]  # (role, content), role in {"user", "assistant"}
    prefill: str = ""


@dataclass(frozen=True)
class Sampling:
    """Sampling for reasoning steps when the user asks for it (default: greedy)."""

    temperature: float
    seed: int
    top_p: float = 1.0


@dataclass(frozen=True)
class ScoreResult:
    """Sum of log-probabilities of each candidate's tokens (fp32), and their token counts."""

    logprobs: tuple[float, ...]
    n_tokens: tuple[int, ...] = field(default=())


class Backend(Protocol):
    name: str
    info: dict  # what goes into the run manifest (engine, dtype, device, template kind)

    def render(self, conv: Conversation) -> str:
        """The exact text the model sees, ending with the prefill."""
        ...

    def score(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[ScoreResult]:
        """Log-probability of each candidate continuation after its rendered prompt."""
        ...

    def generate(
        self, prompts: Sequence[str], max_tokens: int, sampling: Sampling | None = None
    ) -> list[str]:
        """Continuation of each rendered prompt: greedy unless `sampling` is given."""
        ...


def render_plain(conv: Conversation) -> str:
    """G23's Human/Assistant format for base models without a chat template."""
    parts = [
        ("Human: " if role == "user" else "Assistant: ") + text for role, text in conv.messages
    ]
    parts.append("Assistant: " + conv.prefill if conv.prefill else "Assistant:")
    return "\n\n".join(parts)
