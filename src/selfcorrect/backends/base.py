"""The small contract between the engine and every inference engine."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from selfcorrect.errors import SelfCorrectError
from selfcorrect.registry import ResolvedModel


@dataclass(frozen=True)
class Conversation:
    """Finished turns plus the prefilled start of the assistant turn being written, and the
    system prompt: "default" leaves it to the chat template (many inject their own), "none"
    sends an empty one, anything else is sent as the system message."""

    messages: tuple[tuple[str, str], ...]  # (role, content), role in {"user", "assistant"}
    prefill: str = ""
    system: str = "default"

    def chat_messages(self) -> list[dict]:
        """The messages as a chat template takes them, the system message first if any."""
        msgs = [{"role": r, "content": c} for r, c in self.messages]
        if self.system != "default":
            msgs.insert(
                0, {"role": "system", "content": "" if self.system == "none" else self.system}
            )
        return msgs


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
    hidden: object = None  # [layers, hidden] states at the answer position, when captured


class PromptTooLong(SelfCorrectError):
    """A request longer than the model's context; the engine names the item it belongs to."""

    def __init__(self, index: int, n_tokens: int, limit: int):
        self.index, self.n_tokens, self.limit = index, n_tokens, limit
        super().__init__(f"a prompt of {n_tokens:,} tokens exceeds the model's context of "
                         f"{limit:,} tokens")  # fmt: skip


def check_length(index: int, n_tokens: int, limit: int | None) -> None:
    if limit and n_tokens > limit:
        raise PromptTooLong(index, n_tokens, limit)


@dataclass(frozen=True)
class LoadOptions:
    """How a backend loads a model (taken from the run specification)."""

    dtype: str = "bfloat16"
    device: str | None = None
    trust_remote_code: bool = False
    base_url: str | None = None  # served models
    tokenizer: str | None = None  # served models: for client-side chat templates
    concurrency: int = 8  # served models: parallel requests
    head_dtype: str = "model"  # "float32": the output head in fp32 on a lower-precision model


class Backend(Protocol):
    """An inference engine, as the engine and the runner use it."""

    name: str
    info: dict  # what goes into the run manifest (engine, dtype, device, template kind)
    chat: bool  # renders through a chat template (else G23's Human/Assistant text)
    # False: a sequential engine with a prompt cache; the engine then runs one item through
    # all its steps before the next, so the cache holds the conversation so far
    batches: bool
    preferred_batch: int | None  # the most requests per wave it wants (None: no limit)
    # True: generate() also takes on_done(i, text), called as row i finishes, so the engine
    # stores finished rows while the rest of a large batch is still decoding
    streams: bool

    def render(self, conv: Conversation) -> str:
        """The exact text the model sees, ending with the prefill."""
        ...

    def score(
        self, prompts: Sequence[str], candidates: Sequence[Sequence[str]]
    ) -> list[ScoreResult]:
        """Log-probability of each candidate continuation after its rendered prompt."""
        ...

    def generate(
        self, prompts: Sequence[str], max_tokens: int, sampling: Sampling | None = None,
        keys: Sequence[int] | None = None,
    ) -> list[str]:  # fmt: skip
        """Continuation of each rendered prompt: greedy unless `sampling` is given; then row i
        draws with seed keys[i] (its own, whatever shares the batch) or, without keys, the
        sampling seed."""
        ...


class BackendClass(Protocol):
    """What the backend registry needs of a backend's class."""

    # model names starting with this select the backend (e.g. "openai:"); None: --backend
    model_prefix: str | None

    @classmethod
    def from_options(cls, resolved: ResolvedModel, options: LoadOptions) -> Backend:
        """Load the model."""
        ...

    @classmethod
    def resolve(cls, name: str, options: LoadOptions) -> ResolvedModel:
        """For prefixed backends: what `name` stands for (no loading yet)."""
        ...


def render_plain(conv: Conversation) -> str:
    """G23's Human/Assistant format for base models without a chat template."""
    parts = [
        ("Human: " if role == "user" else "Assistant: ") + text for role, text in conv.messages
    ]
    parts.append("Assistant: " + conv.prefill if conv.prefill else "Assistant:")
    if conv.system not in ("default", "none"):  # G23's format has none; a given one goes first
        parts.insert(0, conv.system)
    return "\n\n".join(parts)


_PROBE = "SELFCORRECT_PREFILL_PROBE"


def continues_prefill(tok) -> str | None:
    """None when a prefilled assistant turn renders like the start of a finished one (so the
    model reads the prefill as its own words); else what goes wrong. `tok` is anything with
    a Hugging Face style apply_chat_template."""
    user = [{"role": "user", "content": "Hello."}]
    try:
        opened = tok.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
        done = tok.apply_chat_template(
            [*user, {"role": "assistant", "content": _PROBE}], tokenize=False
        )
    except Exception as exc:  # a template that cannot render a plain exchange
        return f"the template fails on a plain exchange: {exc}"
    if not done.startswith(opened + _PROBE):
        return "a finished assistant turn does not start with the generation prompt"
    return None


class ChatRendering:
    """Rendering shared by in-process backends: the model's chat template with the assistant
    turn prefilled, or G23's Human/Assistant text for base models."""

    chat: bool
    tok: object  # has apply_chat_template
    model_name: str
    prefill_problem: str | None = None

    def _encode(self, text: str) -> list[int]:
        """Token ids of a rendered prompt with a Hugging Face tokenizer (llama.cpp overrides).
        A chat template writes its own BOS/special tokens; plain text gets the tokenizer's."""
        return self.tok(text, add_special_tokens=not self.chat)["input_ids"]

    def _batch_encoder(self, prompts, candidates):
        """Every prompt and prompt+option of a call tokenized in one batched (parallel, for
        fast tokenizers) call with the Hugging Face tokenizer (not for llama.cpp, which
        tokenizes in its own engine); returns a lookup with `_encode`'s signature."""
        texts = list(
            dict.fromkeys(
                t
                for p, cs in zip(prompts, candidates, strict=True)
                for t in (p, *(p + c for c in cs))
            )
        )
        ids = self.tok(texts, add_special_tokens=not self.chat)["input_ids"]
        return dict(zip(texts, ids, strict=True)).__getitem__

    def render(self, conv: Conversation) -> str:
        if not self.chat:
            return render_plain(conv)
        if conv.prefill and self.prefill_problem:
            raise SelfCorrectError(
                f"the chat template of '{self.model_name}' cannot continue an assistant prefill "
                f"({self.prefill_problem}); use a condition without a prefill or another model"
            )
        msgs = conv.chat_messages()
        try:
            text = self.tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # jinja errors, e.g. templates that demand alternating roles
            raise SelfCorrectError(
                f"the model's chat template cannot render this conversation: {exc}"
            ) from None
        return text + conv.prefill


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def candidate_tokens(encode, prompt: str, candidates: Sequence[str]) -> tuple[list[list[int]], int]:
    """Tokenization-safe option scoring: each option is tokenized together with its prompt and
    scored from the first position where any option's tokens depart from the prompt's, so a
    merge at the boundary is counted inside the option. Returns (full token lists, start)."""
    ctx = encode(prompt)
    fulls = [encode(prompt + c) for c in candidates]
    start = min(common_prefix(ctx, f) for f in fulls)
    if start == 0:
        raise SelfCorrectError("an option tokenizes with no shared prefix; cannot score")
    for c, ids in zip(candidates, fulls, strict=True):
        if len(ids) <= start:
            raise SelfCorrectError(f"option {c!r} adds no tokens after the prompt")
    return fulls, start
