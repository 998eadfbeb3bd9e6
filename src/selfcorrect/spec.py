"""The run specification: one frozen, validated object holding every option of a run. The CLI,
plan files, the Python API and Ray shards all build one, and it is stored in the run manifest.
Adding a run option means adding one field here: the CLI flag is made from the field (its
description is the help text), plans and the API take it by name, shards copy it.

Validation here is everything that needs no model: choices, ranges, empty lists, the condition
library and its texts for the benchmark, categories. Models are resolved (files found and
hashed) by the runner, still before any work."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from selfcorrect import backends
from selfcorrect.catalog import get_kit
from selfcorrect.conditions import load_library
from selfcorrect.engine import READOUTS
from selfcorrect.errors import SelfCorrectError, unknown_choice
from selfcorrect.registry import DEFAULT_MODEL, REGISTRY
from selfcorrect.rules_file import load_rules

DEFAULT_CONDITIONS = ("baseline", "instruct", "negation")
DEFAULT_LIMIT = 264  # 6 items in each of BBQ's 11 categories x 2 contexts x 2 polarities
DEFAULT_OUT = Path("results")
LADDER = tuple(sorted(REGISTRY, key=lambda name: REGISTRY[name].params))
_DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?)$")
_LISTS = ("models", "conditions", "categories", "readout")


def _opt(description: str, flag: str | None = None, short: str | None = None, **kw) -> Any:
    """A field with its help text and CLI flag (default: --field-name)."""
    extra = {k: v for k, v in (("flag", flag), ("short", short)) if v}
    return Field(description=description, json_schema_extra=extra or None, **kw)


class RunSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    models: tuple[str, ...] = _opt(
        "Model(s), comma-separated: registry names, .gguf files, HF directories, openai:NAME; "
        "'ladder' = the four packaged models.",
        "--model",
        "-m",
        default=(DEFAULT_MODEL,),
    )
    benchmark: str = _opt("Benchmark name.", default="bbq")
    conditions: tuple[str, ...] = _opt("Conditions, comma-separated.", default=DEFAULT_CONDITIONS)
    categories: tuple[str, ...] = _opt("Categories, comma-separated (default all).", default=())
    limit: int | None = _opt("Items in the stratified sample, or 'all'.", default=DEFAULT_LIMIT)
    seed: int = _opt("Sampling and bootstrap seed.", default=0, ge=0)
    out: Path = _opt("Results directory (resumed if it exists).", default=DEFAULT_OUT)
    rounds: int = _opt("Feedback rounds after each answer.", default=0, ge=0)
    readout: tuple[str, ...] = _opt(
        "logprob, generate, or both comma-separated (same items).", default=("logprob",)
    )
    permute: Literal["none", "cyclic", "all"] = _opt(
        "Option orders each multiple-choice item is asked under (none; cyclic = the 3 "
        "rotations; all = the 6 orders); answers are mapped back to the options' content and "
        "averaged over orders (docs/validity.md).",
        default="cyclic",
    )
    counterfactual: Literal["race", "sex", "both"] = _opt(
        "Law-school benchmark: ask every student as Black and white (race), female and male "
        "(sex), or all four (both).",
        default="race",
    )
    system_prompt: str = _opt(
        "System prompt: default (the chat template's own, which many inject), none (an empty "
        "one: G23 had none), or the text to send.",
        default="default",
    )
    backend: str = _opt("transformers or llamacpp.", default=backends.DEFAULT_BACKEND)
    critic: str | None = _opt(
        "A model that writes each round's feedback (extrinsic).", default=None
    )
    cot_temperature: float | None = _opt(
        "Sample reasoning at this temperature (seeded by --seed).", default=None
    )
    exact_transitions: bool = _opt(
        "Also score round 1 after every possible round-0 answer (log-probability readout), for "
        "exact transition probabilities, confidence and critique (n options extra forwards "
        "per item and condition).",
        default=False,
    )
    save_hidden: str | None = _opt(
        "Keep the residual stream at every answer position (transformers backend): 'all', or "
        "layer indices like '-1' or '0,12,24' (0 = embeddings); stored under OUT/hidden.",
        default=None,
    )
    cot_samples: int = _opt(
        "Reasoning samples per item (with --cot-temperature; G23 sampled at T = 1): answers "
        "are averaged over them.",
        default=1,
        ge=1,
    )
    library: Path | None = _opt("A condition library TOML file.", default=None)
    rules: Path | None = _opt(
        "A verdict rules TOML file (default: the shipped rules); its hash is recorded when the "
        "run starts.",
        default=None,
    )
    dtype: Literal["bfloat16", "float16", "float32"] = _opt(
        "bfloat16, float16 or float32.", default="bfloat16"
    )
    head_dtype: Literal["model", "float32"] = _opt(
        "The output head's arithmetic: 'model' (the model's dtype, as transformers computes it) "
        "or float32 (the same weights in fp32: bf16 logits lie on a grid of 0.125 nats at "
        "magnitudes 16-32, so a one-token readout's probabilities take a few values). "
        "Transformers models; llama.cpp's logits are fp32 either way.",
        default="model",
    )
    device: str | None = _opt("cpu, cuda, cuda:N or mps (default: auto).", default=None)
    batch_size: int = _opt("Requests per stored batch.", default=64, ge=1)
    bootstrap: int = _opt("Bootstrap replicates for CIs.", default=1000, ge=0)
    trust_remote_code: bool = _opt("Allow model code from HF dirs.", default=False)
    base_url: str | None = _opt(
        "OpenAI-compatible server for openai:NAME models (key: $SELFCORRECT_API_KEY).", default=None
    )
    tokenizer: str | None = _opt(
        "Tokenizer of a served model (packaged name or HF dir) for client-side templates.",
        default=None,
    )
    concurrency: int = _opt("Parallel requests to a served model.", default=8, ge=1)
    ray: str | None = _opt(
        "Shard (model x condition) over a Ray cluster: its address, or 'local'.", default=None
    )

    # -- field checks -------------------------------------------------------------------------
    @field_validator(*_LISTS, mode="before")
    @classmethod
    def _names(cls, value, info):
        """Comma-separated text or a list; an empty name is an error, never 'the default'."""
        if isinstance(value, str):
            if not value.strip() and info.field_name == "categories":
                return ()
            value = value.split(",")
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"expected names, got {value!r}")
        names = [v.strip() if isinstance(v, str) else v for v in value]
        if not names and info.field_name != "categories":
            raise ValueError("needs at least one name")
        for v in names:
            if not isinstance(v, str) or not v:
                raise ValueError(f"has an empty or invalid name in {value!r}")
        return tuple(dict.fromkeys(names))

    @field_validator("models")
    @classmethod
    def _ladder(cls, value):
        out: list[str] = []
        for name in value:
            out += LADDER if name == "ladder" else [name]
        return tuple(dict.fromkeys(out))

    @field_validator("limit", mode="before")
    @classmethod
    def _limit(cls, value):
        if isinstance(value, str):
            text = value.strip().lower()
            if text == "all":
                return None
            if not re.fullmatch(r"[+-]?\d+", text):
                raise ValueError("must be a number or 'all'")
            value = int(text)
        if isinstance(value, bool) or (value is not None and not isinstance(value, int)):
            raise ValueError("must be a number or 'all'")
        if value is not None and value < 1:
            raise ValueError("must be >= 1 (or 'all')")
        return value

    @field_validator("readout")
    @classmethod
    def _readouts(cls, value):
        for r in value:
            if r not in READOUTS:
                raise unknown_choice("readout", r, READOUTS)
        return value

    @field_validator("backend")
    @classmethod
    def _backend(cls, value):
        if value not in backends.selectable():
            raise unknown_choice("backend", value, backends.selectable())
        return value

    @field_validator("cot_temperature")
    @classmethod
    def _temperature(cls, value):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError("must be a finite number > 0")
        return value

    @field_validator("save_hidden")
    @classmethod
    def _layers(cls, value):
        if value is not None and value.strip() != "all":
            try:
                [int(x) for x in value.split(",")]
            except ValueError:
                raise ValueError("must be 'all' or comma-separated layer numbers") from None
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value):
        if value is not None and not _DEVICE.match(value):
            raise unknown_choice("device", value, ["cpu", "cuda", "cuda:N", "mps"])
        return value

    # -- checks across fields ---------------------------------------------------------------
    @model_validator(mode="after")
    def _consistent(self):
        kit = get_kit(self.benchmark)
        known = kit.benchmark.categories()
        for c in self.categories:
            if c not in known:
                raise unknown_choice(f"{self.benchmark.upper()} category", c, known)
        load_rules(self.rules)  # readable and valid before any work
        lib, conds = self.library_conditions()  # the library has them all for this family
        lib.check_fields(conds, kit.family, kit.benchmark.fields)
        if self.cot_samples > 1 and self.cot_temperature is None:
            raise SelfCorrectError(
                "--cot-samples K > 1 samples the reasoning: add --cot-temperature T"
            )
        if self.exact_transitions and (self.rounds == 0 or "logprob" not in self.readout):
            raise SelfCorrectError(
                "--exact-transitions branches round 1: add --rounds R >= 1 and the logprob readout"
            )
        if self.exact_transitions and self.cot_temperature:
            raise SelfCorrectError(
                "--exact-transitions continues the round-0 conversation, which must be the same "
                "text in every branch: drop --cot-temperature (greedy reasoning)"
            )
        if self.ray and self.save_hidden:  # a shard's states stay in its temporary store
            raise SelfCorrectError(
                "--save-hidden keeps states on the machine that computes them: drop --ray"
            )
        if self.critic and self.rounds == 0:
            raise SelfCorrectError(
                "--critic writes the feedback of each round: add --rounds R >= 1"
            )
        return self

    def library_conditions(self):
        """(library, the conditions resolved for this benchmark)."""
        lib = load_library(self.library)
        return lib, lib.resolve(list(self.conditions), get_kit(self.benchmark).family)

    # -- building -----------------------------------------------------------------------------
    @classmethod
    def build(cls, where: str = "", **options) -> RunSpec:
        """A spec from options named like the fields; one-line errors naming the option."""
        try:
            return cls(**options)
        except ValidationError as exc:
            raise SelfCorrectError(describe(exc, where)) from None
        except SelfCorrectError as exc:
            if not where:
                raise
            raise SelfCorrectError(f"{where}: {exc}") from None

    def shard(self, **changes) -> RunSpec:
        """The same run with some fields changed (a Ray shard: one model, one condition, its
        own directory); every other field travels unchanged, whatever fields exist."""
        return self.model_copy(update=changes)

    def to_manifest(self) -> dict:
        """The spec as JSON-able data for the run manifest."""
        return self.model_dump(mode="json")


def flag_of(field: str) -> str:
    info = RunSpec.model_fields.get(field)
    extra = (info.json_schema_extra or {}) if info else {}
    return extra.get("flag") or "--" + field.replace("_", "-")


def describe(exc: ValidationError, where: str = "") -> str:
    """The first problem of a validation error as one line: the option, what is wrong, the
    value given."""
    err = exc.errors()[0]
    loc = [str(x) for x in err["loc"]]
    name = flag_of(loc[0]) if len(loc) == 1 and not where else ".".join(loc)
    prefix = f"{where}: " if where else ""
    msg = err["msg"].removeprefix("Value error, ")
    kind, ctx, given = err["type"], err.get("ctx") or {}, err.get("input")
    if kind == "greater_than_equal":
        msg = f"must be >= {ctx['ge']}"
    elif kind == "extra_forbidden":
        return f"{prefix}{name}: unknown option"
    elif kind == "missing":
        return f"{prefix}{name}: Field required"
    shown = "" if isinstance(given, dict) else f", got {given!r}"
    return f"{prefix}{name} {msg}{shown}"
