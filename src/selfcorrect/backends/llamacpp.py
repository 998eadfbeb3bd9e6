"""llama.cpp backend (llama-cpp-python): reads the packaged GGUF files directly.

Scoring evaluates each prompt once and keeps it in the KV cache; every option is then scored
from that cached prefix, and consecutive prompts reuse whatever prefix they share with the one
before (the chat header, the same context under another condition, earlier rounds)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from datetime import datetime

import numpy as np

from selfcorrect.backends.base import (
    ChatRendering,
    LoadOptions,
    Sampling,
    ScoreResult,
    candidate_tokens,
    check_length,
    common_prefix,
    continues_prefill,
)
from selfcorrect.errors import SelfCorrectError
from selfcorrect.registry import ResolvedModel

INSTALL = "pip install llama-cpp-python==0.3.36"


class _GGUFTemplate:
    """The chat template stored in the GGUF, rendered like transformers does (sandboxed Jinja
    with trim_blocks/lstrip_blocks), so both backends send the model the same text."""

    def __init__(self, source: str, bos: str, eos: str):
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise ValueError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
        self.template = env.from_string(source)
        self.bos, self.eos = bos, eos

    def apply_chat_template(self, messages, tokenize=False, add_generation_prompt=False):
        return self.template.render(
            messages=messages,
            add_generation_prompt=add_generation_prompt,
            bos_token=self.bos,
            eos_token=self.eos,
        )


class LlamaCppBackend(ChatRendering):
    name = "llamacpp"
    model_prefix = None
    batches = False  # sequential: the engine walks one item at a time through its cache
    preferred_batch = None
    streams = False

    @classmethod
    def from_options(cls, resolved: ResolvedModel, options: LoadOptions) -> LlamaCppBackend:
        return cls(resolved)

    def __init__(self, resolved: ResolvedModel, n_ctx: int = 4096, threads: int | None = None):
        try:
            import llama_cpp
        except ImportError:
            raise SelfCorrectError(
                f"the llama.cpp backend needs llama-cpp-python: {INSTALL}"
            ) from None
        if resolved.source == "hf-dir":
            raise SelfCorrectError("the llama.cpp backend reads GGUF files, not HF directories")
        threads = threads or os.cpu_count() or 1
        try:
            self.llm = llama_cpp.Llama(
                model_path=str(resolved.path),
                n_ctx=n_ctx,
                n_batch=512,
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=False,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise SelfCorrectError(f"llama.cpp cannot load {resolved.path}: {exc}") from None
        self.model_name = resolved.name
        self.n_ctx = n_ctx
        self.vocab = self.llm.n_vocab()
        meta = self.llm.metadata
        template = meta.get("tokenizer.chat_template")
        kind = resolved.kind or ("chat" if template else "base")
        self.chat = kind == "chat"
        if self.chat and not template:
            raise SelfCorrectError(f"model '{resolved.name}' is listed as chat but has no template")
        self.add_bos = meta.get("tokenizer.ggml.add_bos_token", "true") != "false"
        if self.chat:
            self.tok = _GGUFTemplate(
                template, self._piece(self.llm.token_bos()), self._piece(self.llm.token_eos())
            )
            self.prefill_problem = continues_prefill(self.tok)
        self.info = {
            "engine": "llama.cpp",
            "llama_cpp_python_version": llama_cpp.__version__,
            "dtype": "gguf (as stored)",
            "device": "cpu",
            "prompt_format": "chat-template" if self.chat else "human-assistant",
            "threads": threads,
            "n_ctx": n_ctx,
        }

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _encode(self, text: str) -> list[int]:
        # A chat template writes its own BOS/special tokens; plain text gets the model's BOS.
        return self.llm.tokenize(
            text.encode("utf-8"), add_bos=not self.chat and self.add_bos, special=True
        )

    # -- the KV cache holds llm.input_ids[:llm.n_tokens]; eval() appends after n_tokens -------
    def _goto(self, tokens: Sequence[int]) -> np.ndarray:
        """Make the cache hold exactly `tokens`, evaluating only what is not there yet; return
        the log-probabilities of the next token."""
        have = self.llm.input_ids[: self.llm.n_tokens].tolist()
        # The last token is always evaluated on its own: llama.cpp's batched and single-token
        # kernels round differently, and the readout must not depend on what came before.
        keep = min(common_prefix(have, tokens), len(tokens) - 1)
        self.llm.n_tokens = keep
        if keep < len(tokens) - 1:
            self.llm.eval(list(tokens[keep:-1]))
        self.llm.eval([tokens[-1]])
        logits = np.ctypeslib.as_array(self.llm._ctx.get_logits(), shape=(self.vocab,))
        logits = logits.astype(np.float64)
        return logits - (logits.max() + math.log(np.exp(logits - logits.max()).sum()))

    def score(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[ScoreResult]:
        results = []
        for r, (prompt, cands) in enumerate(zip(prompts, candidates, strict=True)):
            fulls, start = candidate_tokens(self._encode, prompt, cands)
            check_length(r, max(len(f) for f in fulls), self.n_ctx - 1)
            lps, ns = [], []
            for ids in fulls:
                total = 0.0
                for t in range(start, len(ids)):
                    total += float(self._goto(ids[:t])[ids[t]])
                lps.append(total)
                ns.append(len(ids) - start)
            results.append(ScoreResult(tuple(lps), tuple(ns)))
        return results

    def generate(
        self, prompts: Sequence[str], max_tokens: int, sampling: Sampling | None = None,
        keys: Sequence[int] | None = None,
    ) -> list[str]:  # fmt: skip
        out = []
        for r, prompt in enumerate(prompts):
            tokens = self._encode(prompt)
            check_length(r, len(tokens) + max_tokens, self.n_ctx - 1)
            if sampling is None:  # greedy, explicitly
                how = {"temperature": 0.0, "top_k": 1, "top_p": 1.0, "seed": 0}
            else:
                how = {
                    "temperature": sampling.temperature,
                    "top_p": sampling.top_p,
                    "top_k": 0,
                    "seed": (int(keys[r]) if keys is not None else sampling.seed) % (2**32),
                }
            res = self.llm.create_completion(
                prompt=tokens, max_tokens=max_tokens, min_p=0.0, repeat_penalty=1.0, **how
            )
            out.append(res["choices"][0]["text"])
        return out
