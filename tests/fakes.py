"""A fake backend for plumbing tests only: deterministic, no model. Registered as the backend
of model names starting with "fake:", so whole runs (resume, interrupts, plans, shards) can be
tested fast. Real-model tests live in test_end_to_end.py and backends/."""

import hashlib
from pathlib import Path

import numpy as np

from selfcorrect.backends import register_backend
from selfcorrect.backends.base import ScoreResult, render_plain
from selfcorrect.registry import ResolvedModel

# model name -> FakeBackend keyword arguments, for runs that load fakes by name
BEHAVIOUR: dict[str, dict] = {}
LOADED: list["FakeBackend"] = []  # every fake a run loaded, in order


class FakeBackend:
    name = "fake"
    info = {"engine": "fake"}
    chat = False
    batches = True
    preferred_batch = None
    streams = False
    model_prefix = "fake:"
    n_hidden_states, hidden_size = 3, 4  # a pretend model's states, for --save-hidden

    def hidden_support(self):
        return None

    def __init__(self, prefer=None, fail_after=None, answer=" (b) is right", name="fake"):
        self.prefer = prefer or (lambda prompt: 0)
        self.calls = {"score": 0, "generate": 0, "scored_prompts": []}
        self.fail_after = fail_after
        self.answer = answer
        self.name = name
        self.capture_layers = []

    @classmethod
    def resolve(cls, name, options):
        digest = hashlib.sha256(name.encode()).hexdigest()
        meta = {"params": 1000 * (1 + len(name)), "kind": "base", "alignment": "none"}
        return ResolvedModel(name, "fake", Path(name), digest, "base", meta)

    @classmethod
    def from_options(cls, resolved, options):
        fake = cls(**BEHAVIOUR.get(resolved.name, {}))
        LOADED.append(fake)
        return fake

    def render(self, conv):
        return render_plain(conv)

    def score(self, prompts, candidates):
        out = []
        for p, cands in zip(prompts, candidates, strict=True):
            if self.fail_after is not None and self.calls["score"] >= self.fail_after:
                raise KeyboardInterrupt
            self.calls["score"] += 1
            self.calls["scored_prompts"].append(p)
            best = self.prefer(p)
            hidden = None
            if self.capture_layers:  # a state that says which option the fake prefers
                hidden = np.tile(np.eye(self.hidden_size)[best % self.hidden_size],
                                 (len(self.capture_layers), 1))  # fmt: skip
            out.append(
                ScoreResult(
                    tuple(-1.0 if j == best else -3.0 for j in range(len(cands))),
                    tuple(3 for _ in cands),
                    hidden,
                )
            )
        return out

    def generate(self, prompts, max_tokens, sampling=None, keys=None):
        self.calls["generate"] += len(prompts)
        if max_tokens == 8:  # the generation readout's answer
            return [self.answer for _ in prompts]
        return [f" {self.name} says #{i}" for i in range(len(prompts))]


register_backend("fake", FakeBackend, prefix="fake:")
