"""Served models over an OpenAI-compatible API (vLLM, SGLang, Ollama, llama.cpp's server, a
hosted API): the official `openai` client does the HTTP, retries with backoff on 429/5xx and
timeouts; this module only maps the engine's three calls onto the endpoints.

With the model's tokenizer known (a packaged model's name, or --tokenizer), prompts are rendered
client-side through its chat template and sent to the completions endpoint, so the server sees
exactly what the in-process backends see. The log-probability readout then uses, whichever the
server supports (probed once, reported in the manifest):
- "echo": prompt log-probabilities (echo=True with logprobs): one request per option;
- "top-logprobs": the top-k next-token log-probabilities after each prefix of an option (one
  request per distinct prefix), for servers whose echoed log-probabilities are missing or
  misaligned (llama.cpp's server gives none; llama-cpp-python's are shifted by one position).
Without a tokenizer, the chat completions endpoint and the generation readout only."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from selfcorrect.backends.base import (
    ChatRendering,
    Conversation,
    LoadOptions,
    Sampling,
    ScoreResult,
    candidate_tokens,
    check_length,
    continues_prefill,
)
from selfcorrect.errors import SelfCorrectError
from selfcorrect.redact import KEY_VARS, redact_url, scrub
from selfcorrect.registry import REGISTRY, ResolvedModel

PREFIX = "openai:"
TOP_K = 20  # top log-probabilities asked for in "top-logprobs" mode


@dataclass(frozen=True)
class ServedSettings:
    base_url: str
    tokenizer: str | None = None  # a packaged model name or a local HF directory
    concurrency: int = 8
    timeout_s: float = 120.0
    max_retries: int = 5


def resolve_served(name: str, settings: ServedSettings) -> ResolvedModel:
    """`openai:NAME` at a base URL. Its identity in the store is the URL and the name (there
    are no weights to hash); the tokenizer, when known, is recorded too."""
    served = name[len(PREFIX) :]
    if not served:
        raise SelfCorrectError("--model openai:NAME needs the served model's name after 'openai:'")
    if not settings.base_url:
        raise SelfCorrectError(f"model '{name}' needs --base-url (e.g. http://localhost:8000/v1)")
    tokenizer = settings.tokenizer or (served if served in REGISTRY else None)
    url = redact_url(settings.base_url)  # keys in a URL are never stored
    digest = hashlib.sha256(f"{url.rstrip('/')}|{served}".encode()).hexdigest()
    meta = {"served_model": served, "base_url": url, "tokenizer": tokenizer}
    if served in REGISTRY:
        spec = REGISTRY[served]
        meta |= {"params": spec.params, "family": spec.family, "alignment": spec.alignment}
    kind = REGISTRY[tokenizer].kind if tokenizer in REGISTRY else None
    return ResolvedModel(name, "openai", Path(url), digest, kind, meta)


def _load_tokenizer(name: str):
    """The Hugging Face tokenizer (with its chat template) of a packaged model or HF folder."""
    from transformers import AutoTokenizer

    from selfcorrect.backends.transformers.gguf_cache import dequantised_copy, quiet_transformers
    from selfcorrect.registry import resolve

    quiet_transformers()
    res = resolve(name)
    folder = res.path if res.source == "hf-dir" else dequantised_copy(res, "bfloat16")
    return AutoTokenizer.from_pretrained(folder)


def _describe(prompt: str) -> str:
    """Which request failed, short enough for a one-line error."""
    tail = " ".join(prompt[-70:].split())
    return f"request sha256 {hashlib.sha256(prompt.encode()).hexdigest()[:10]} ('...{tail}')"


class OpenAIBackend(ChatRendering):
    name = "openai"
    model_prefix = PREFIX
    batches = True
    streams = False

    @staticmethod
    def settings(options: LoadOptions) -> ServedSettings:
        if options.head_dtype != "model":
            raise SelfCorrectError(
                "--head-dtype applies to local models: a served model's log-probabilities are "
                "computed by its server"
            )
        return ServedSettings(options.base_url or "", options.tokenizer, options.concurrency)

    @classmethod
    def resolve(cls, name: str, options: LoadOptions) -> ResolvedModel:
        return resolve_served(name, cls.settings(options))

    @classmethod
    def from_options(cls, resolved: ResolvedModel, options: LoadOptions) -> OpenAIBackend:
        return cls(resolved, cls.settings(options))

    def __init__(self, resolved: ResolvedModel, settings: ServedSettings):
        try:
            import openai
        except ImportError:
            raise SelfCorrectError(
                "the API backend needs the openai client: pip install openai"
            ) from None
        self.openai = openai
        self.settings = settings
        self.served = resolved.meta["served_model"]
        self.model_name = resolved.name
        key = next((os.environ[v] for v in KEY_VARS if os.environ.get(v)), "EMPTY")
        self.client = openai.OpenAI(
            base_url=settings.base_url,
            api_key=key,
            timeout=settings.timeout_s,
            max_retries=settings.max_retries,
        )
        self.preferred_batch = max(1, settings.concurrency) * 4  # little to redo after a crash
        self._lock = threading.Lock()
        self.requests = 0
        self.bounded = 0  # options whose token fell outside the top-k (an upper bound used)
        listed = self._call(lambda: list(self.client.models.list()), "models")
        served_ids = [m.id for m in listed]
        # vLLM and SGLang say how long a sequence may be; longer prompts are refused here
        self.max_len = next((getattr(m, "max_model_len", None) for m in listed
                             if m.id == self.served), None)  # fmt: skip
        if served_ids and self.served not in served_ids:
            raise SelfCorrectError(
                f"the server at {redact_url(settings.base_url)} does not serve '{self.served}' "
                f"(it serves: {', '.join(served_ids[:10])})"
            )
        tok_name = resolved.meta.get("tokenizer")
        self.tok = _load_tokenizer(tok_name) if tok_name else None
        if self.tok is not None:
            self.chat = bool(getattr(self.tok, "chat_template", None))
            self.prefill_problem = continues_prefill(self.tok) if self.chat else None
            self.logprob_mode, self.detection = self._detect_logprob_mode()
        else:
            self.chat = True
            self.logprob_mode, self.detection = "none", "no tokenizer: chat completions only"
        self.info = {
            "engine": "openai-compatible",
            "base_url": redact_url(settings.base_url),
            "served_model": self.served,
            "tokenizer": tok_name,
            "endpoint": "completions" if self.tok is not None else "chat.completions",
            "logprob_mode": self.logprob_mode,
            "logprob_detection": self.detection,
            "concurrency": settings.concurrency,
            "prompt_format": "client-side chat template" if self.tok is not None else "server",
        }

    # plumbing ----------------------------------------------------------------------------
    def _call(self, fn, what: str):
        """One request, retried by the client; failures become one-line errors that say
        which request failed."""
        oa = self.openai
        url = redact_url(self.settings.base_url)
        with self._lock:
            self.requests += 1
        try:
            return fn()
        except oa.AuthenticationError:
            raise SelfCorrectError(
                f"authentication failed at {url}: set {KEY_VARS[0]} (or {KEY_VARS[1]})"
            ) from None
        except oa.APITimeoutError:
            raise SelfCorrectError(
                f"{what} timed out at {url} after {self.settings.max_retries} retries"
            ) from None
        except oa.APIConnectionError as exc:
            raise SelfCorrectError(
                f"cannot reach the server at {url} ({what}): {scrub(str(exc))}"
            ) from None
        except oa.APIStatusError as exc:
            raise SelfCorrectError(
                f"{what} failed at {url}: HTTP {exc.status_code}: {scrub(str(exc))[:200]}"
            ) from None
        except (oa.APIResponseValidationError, ValueError, KeyError, TypeError,
                AttributeError, IndexError) as exc:  # fmt: skip
            raise SelfCorrectError(
                f"{what}: malformed response from {url}: {type(exc).__name__}: {scrub(str(exc))}"
            ) from None

    def _map(self, fn, jobs: list) -> list:
        if len(jobs) <= 1 or self.settings.concurrency <= 1:
            return [fn(j) for j in jobs]
        with ThreadPoolExecutor(self.settings.concurrency) as pool:
            return list(pool.map(fn, jobs))

    def _complete(self, prompt: str, what: str, parse=lambda choice: choice.text, **kw):
        """One completions request; `parse` reads the choice inside the error handling, so a
        malformed response fails as such, naming the request."""

        def go():
            out = self.client.completions.create(model=self.served, prompt=prompt, **kw)
            choice = out.choices[0]
            if not isinstance(getattr(choice, "text", None), str):
                raise ValueError("no completion text")
            if kw.get("logprobs") is not None and choice.logprobs is None:
                raise ValueError("no logprobs in the response")
            return parse(choice)

        return self._call(go, what)

    # rendering ---------------------------------------------------------------------------
    def render(self, conv: Conversation) -> str:
        if self.tok is not None:
            return super().render(conv)
        # no tokenizer: the messages themselves are the prompt, sent to chat completions
        msgs = conv.chat_messages()
        if conv.prefill:
            msgs.append({"role": "assistant", "content": conv.prefill})
        return json.dumps(msgs, ensure_ascii=False)

    # log-probability readout ---------------------------------------------------------------
    def _detect_logprob_mode(self) -> tuple[str, str]:
        """Echoed prompt log-probabilities are trusted only if aligned: with greedy decoding
        the generated token must be the top entry of its own position's distribution."""
        probe = "The capital of France is Paris. The capital of Italy is"
        try:
            lp = self._complete(
                probe, "probe", lambda c: c.logprobs, max_tokens=1, echo=True, logprobs=5,
                temperature=0,
            )  # fmt: skip
            tops, toks = lp.top_logprobs or [], lp.tokens or []
            if len(toks) >= 3 and len(tops) == len(toks) and tops[-1]:
                if max(tops[-1], key=tops[-1].get) == toks[-1]:
                    return "echo", "echoed prompt log-probabilities, aligned"
                why = "echoed log-probabilities are shifted by one position"
            else:
                why = "no echoed prompt log-probabilities"
        except SelfCorrectError as exc:
            why = f"echo refused ({exc})"
        try:
            self._complete(probe, "probe", _first_top, max_tokens=1, logprobs=TOP_K,
                           temperature=0)  # fmt: skip
        except SelfCorrectError:
            return "none", why + "; no top log-probabilities either"
        return "top-logprobs", why + f"; top-{TOP_K} next-token log-probabilities used"

    def score(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[ScoreResult]:
        if self.logprob_mode == "none":
            raise SelfCorrectError(
                f"'{self.model_name}' gives no log-probabilities ({self.detection}): "
                "use --readout generate"
            )
        encode = self._batch_encoder(prompts, candidates)
        reqs = []
        for prompt, cands in zip(prompts, candidates, strict=True):
            fulls, start = candidate_tokens(encode, prompt, cands)
            check_length(len(reqs), max(len(f) for f in fulls), self.max_len)
            reqs.append((prompt, cands, fulls, start))
        if self.logprob_mode == "echo":
            jobs = [(p, c) for p, cands, _, _ in reqs for c in cands]
            flat = self._map(lambda job: self._echo_option(*job), jobs)
            out, k = [], 0
            for _, cands, fulls, start in reqs:
                out.append(ScoreResult(tuple(flat[k : k + len(cands)]),
                                       tuple(len(f) - start for f in fulls)))  # fmt: skip
                k += len(cands)
            return out
        return self._score_top(reqs)

    def _echo_option(self, prompt: str, option: str) -> float:
        """One option's log-probability from the echoed prompt (see _option_sum)."""
        text = prompt + option
        return self._complete(
            text, _describe(text), lambda c: _option_sum(c.logprobs, prompt, text),
            max_tokens=1, echo=True, logprobs=1, temperature=0,
        )  # fmt: skip

    def _score_top(self, reqs) -> list[ScoreResult]:
        """Each option token's log-probability read from the top-k after its prefix; one
        request per distinct prefix (the options' shared first tokens are asked once)."""
        contexts: dict[tuple, None] = {}
        for _, _, fulls, start in reqs:
            for ids in fulls:
                for t in range(start, len(ids)):
                    contexts.setdefault(tuple(ids[:t]))
        keys = list(contexts)

        def ask(ids):
            text = self.tok.decode(list(ids))
            return self._complete(
                text, _describe(text), _first_top, max_tokens=1, logprobs=TOP_K, temperature=0
            )

        tops = dict(zip(keys, self._map(ask, keys), strict=True))
        out = []
        for _, _, fulls, start in reqs:
            lps = []
            for ids in fulls:
                total = 0.0
                for t in range(start, len(ids)):
                    top = tops[tuple(ids[:t])]
                    piece = self.tok.decode([ids[t]])
                    if piece in top:
                        total += top[piece]
                    else:  # below the top-k: its log-prob is at most the k-th one's
                        total += min(top.values())
                        with self._lock:
                            self.bounded += 1
                lps.append(total)
            out.append(ScoreResult(tuple(lps), tuple(len(f) - start for f in fulls)))
        self.info["options_below_top_k"] = self.bounded
        return out

    # generation ----------------------------------------------------------------------------
    def generate(
        self, prompts: Sequence[str], max_tokens: int, sampling: Sampling | None = None,
        keys: Sequence[int] | None = None,
    ) -> list[str]:  # fmt: skip
        hows = [{"temperature": 0.0}] * len(prompts)
        if sampling is not None:  # each row its own seed (servers that honour seeds repeat it)
            hows = [{"temperature": sampling.temperature, "top_p": sampling.top_p,
                     "seed": (int(keys[i]) if keys is not None else sampling.seed) % (2**31)}
                    for i in range(len(prompts))]  # fmt: skip
        if self.tok is not None and self.max_len:
            for r, prompt in enumerate(prompts):
                check_length(r, len(self._encode(prompt)) + max_tokens, self.max_len)
        if self.tok is not None:

            def one(job):  # fmt: skip
                prompt, how = job
                return self._complete(prompt, _describe(prompt), max_tokens=max_tokens, **how)
        else:

            def one(job):  # fmt: skip
                prompt, how = job
                msgs = json.loads(prompt)
                extra = {}
                if msgs and msgs[-1]["role"] == "assistant":  # a prefill: vLLM continues it
                    extra = {"continue_final_message": True, "add_generation_prompt": False}

                def go():
                    out = self.client.chat.completions.create(
                        model=self.served, messages=msgs, max_tokens=max_tokens,
                        extra_body=extra or None, **how,
                    )  # fmt: skip
                    text = out.choices[0].message.content
                    if text is None:
                        raise ValueError("no message content")
                    return text

                return self._call(go, _describe(prompt))

        return self._map(one, list(zip(prompts, hows, strict=True)))


def _first_top(choice) -> dict[str, float]:
    top = choice.logprobs.top_logprobs[0]
    if not isinstance(top, dict) or not top:
        raise ValueError("empty top_logprobs")
    return {str(k): float(v) for k, v in top.items()}


def _option_sum(lp, prompt: str, text: str) -> float:
    """Sum of the echoed log-probabilities of the tokens that reach past the prompt (a token
    straddling the boundary is counted whole, like the in-process backends)."""
    total, counted = 0.0, 0
    for off, tok, val in zip(lp.text_offset, lp.tokens, lp.token_logprobs, strict=False):
        if off >= len(text):
            break  # the generated token
        if off + len(tok) > len(prompt):
            if val is None:
                raise ValueError("a null log-probability inside the option")
            total += float(val)
            counted += 1
    if not counted:
        raise ValueError("no option tokens in the echoed prompt")
    return total
