"""BBQ (Parrish et al. 2022): all 11 categories, joined with additional_metadata.csv."""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import pandas as pd

from selfcorrect.benchmarks.answers import (
    AMBIGUOUS,
    EMPTY,
    OK,
    REFUSAL,
    REFUSAL_RE,
    UNPARSEABLE,
    normalise,
)
from selfcorrect.benchmarks.base import Item, orders, stratified_sample, variant_uid
from selfcorrect.data import data_dir
from selfcorrect.errors import SelfCorrectError, unknown_choice

# Rows per category file, as published upstream (shared/data/README.md).
EXPECTED_COUNTS = {
    "Age": 3680,
    "Disability_status": 1556,
    "Gender_identity": 5672,
    "Nationality": 3080,
    "Physical_appearance": 1576,
    "Race_ethnicity": 6880,
    "Race_x_SES": 11160,
    "Race_x_gender": 15960,
    "Religion": 1200,
    "SES": 6864,
    "Sexual_orientation": 864,
}
TOTAL_ITEMS = 58_492

# The category's dimension, used by the specificity ladder's {dim} (methodology.md section 3).
DIMENSIONS = {
    "Age": "age",
    "Disability_status": "disability status",
    "Gender_identity": "gender identity",
    "Nationality": "nationality",
    "Physical_appearance": "physical appearance",
    "Race_ethnicity": "race and ethnicity",
    "Race_x_SES": "race and socioeconomic status",
    "Race_x_gender": "race and gender",
    "Religion": "religion",
    "SES": "socioeconomic status",
    "Sexual_orientation": "sexual orientation",
}
LETTERS = ("a", "b", "c")
CANDIDATES = tuple(f" ({letter})" for letter in LETTERS)
_REQUIRED = (
    "example_id",
    "question_index",
    "question_polarity",
    "context_condition",
    "category",
    "answer_info",
    "context",
    "question",
    "ans0",
    "ans1",
    "ans2",
    "label",
)


def question_text(context: str, question: str, answers: Sequence[str]) -> str:
    """G23's verbatim BBQ question form."""
    a, b, c = answers
    return f"{context} {question} (a) {a} (b) {b} (c) {c}."


def _read_category(path: Path, category: str) -> list[dict]:
    rows = []
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise SelfCorrectError(
                        f"malformed BBQ file {path}: line {lineno}: {exc.msg}"
                    ) from None
                missing = [k for k in _REQUIRED if k not in row]
                if missing:
                    raise SelfCorrectError(
                        f"malformed BBQ file {path}: line {lineno} lacks {', '.join(missing)}"
                    )
                rows.append(row)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SelfCorrectError(f"cannot read BBQ file {path}: {exc}") from None
    if len(rows) != EXPECTED_COUNTS[category]:
        raise SelfCorrectError(
            f"malformed BBQ file {path}: {len(rows)} items, expected {EXPECTED_COUNTS[category]}"
        )
    return rows


def _read_metadata(path: Path) -> dict[tuple[str, int], tuple[int | None, str]]:
    """(category, example_id) -> (target_loc or None, label_type); the 64 duplicated
    Gender_identity keys are kept once (their target_loc always agrees)."""
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            text = fh.read()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise SelfCorrectError(f"cannot read BBQ metadata {path}: {exc}") from None
    reader = csv.DictReader(io.StringIO(text))
    need = {"category", "example_id", "target_loc", "label_type"}
    if not reader.fieldnames or not need <= set(reader.fieldnames):
        raise SelfCorrectError(f"malformed BBQ metadata {path}: header lacks {sorted(need)}")
    out: dict[tuple[str, int], tuple[int | None, str]] = {}
    for lineno, row in enumerate(reader, 2):
        try:
            key = (row["category"], int(row["example_id"]))
            loc = None if row["target_loc"] in ("NA", "") else int(float(row["target_loc"]))
        except (TypeError, ValueError):
            raise SelfCorrectError(f"malformed BBQ metadata {path}: record {lineno}") from None
        if loc is not None and loc not in (0, 1, 2):
            raise SelfCorrectError(f"malformed BBQ metadata {path}: target_loc {loc}")
        out.setdefault(key, (loc, row["label_type"]))
    return out


def _make_item(row: dict, target_loc: int | None, label_type: str) -> Item:
    answers = (row["ans0"], row["ans1"], row["ans2"])
    tags = [row["answer_info"][f"ans{k}"][1] for k in range(3)]
    unknown = [k for k, t in enumerate(tags) if t == "unknown"]
    category = row["category"]
    if len(unknown) != 1:
        raise SelfCorrectError(
            f"malformed BBQ item {category}:{row['example_id']}: {len(unknown)} unknown options"
        )
    label = int(row["label"])
    return Item(
        benchmark="bbq",
        uid=f"{category}:{row['example_id']}",
        category=category,
        fields={
            "question_text": question_text(row["context"], row["question"], answers),
            "dim": DIMENSIONS[category],
            "gold_letter": LETTERS[label],
        },
        candidates=CANDIDATES,
        gold=label,
        meta={
            "example_id": int(row["example_id"]),
            "question_index": str(row["question_index"]),
            "polarity": row["question_polarity"],
            "context_condition": row["context_condition"],
            "unknown_index": unknown[0],
            "target_loc": target_loc,
            "label_type": label_type,
            "answers": answers,
            "context": row["context"],
            "question": row["question"],
        },
        cloze=tuple(f" {a}" for a in answers),
    )


def permuted(item: Item, order: tuple[int, ...]) -> Item:
    """The item with its options shown in `order` (position j shows original option
    order[j]): the question text, the letter of the gold answer, and the positions of the
    gold, UNKNOWN and target options follow; `base_uid` and `order` say where it came from."""
    m = item.meta
    answers = tuple(m["answers"][k] for k in order)
    at = order.index  # original option -> its position in this order
    gold = at(item.gold)
    meta = {**m, "answers": answers, "unknown_index": at(m["unknown_index"]),
            "target_loc": None if m["target_loc"] is None else at(m["target_loc"]),
            "base_uid": item.uid, "order": "".join(map(str, order))}  # fmt: skip
    fields = {**item.fields, "question_text": question_text(m["context"], m["question"], answers),
              "gold_letter": LETTERS[gold]}  # fmt: skip
    return Item(item.benchmark, variant_uid(item.uid, order), item.category, fields,
                item.candidates, gold, meta, tuple(f" {a}" for a in answers))  # fmt: skip


@lru_cache(maxsize=4)
def load_all(root: str | None = None) -> tuple[Item, ...]:
    """Every BBQ item, checked against the published counts and joined with target_loc."""
    base = Path(root) if root else data_dir() / "bbq"
    meta = _read_metadata(base / "additional_metadata.csv.gz")
    items: list[Item] = []
    for category in EXPECTED_COUNTS:
        for row in _read_category(base / f"{category}.jsonl.gz", category):
            key = (row["category"], int(row["example_id"]))
            if key not in meta:
                raise SelfCorrectError(f"BBQ metadata has no row for {key[0]}:{key[1]}")
            items.append(_make_item(row, *meta[key]))
    if len(items) != TOTAL_ITEMS:
        raise SelfCorrectError(f"BBQ has {len(items)} items, expected {TOTAL_ITEMS}")
    return tuple(items)


# "(a)" anywhere at the start; a bare letter only when punctuation or the end follows ("a person"
# is not an answer).
_LETTER = re.compile(r"^[\s:\-*\"']*(?:\(\s*([abc])\s*\)|([abc])\s*(?:[)\].:,]|$))", re.IGNORECASE)


def parse_answer(item: Item, text: str) -> tuple[int | None, str]:
    """A letter (a)/(b)/(c) at the start, else exactly one option's text (the earliest, and the
    longest at the same place); refusals and everything else are unparseable."""
    stripped = text.strip()
    if not stripped:
        return None, EMPTY
    m = _LETTER.match(stripped)
    if m:
        return "abc".index((m.group(1) or m.group(2)).lower()), OK
    if REFUSAL_RE.match(stripped):
        return None, REFUSAL
    said = f" {normalise(stripped)} "
    hits = []
    for k, option in enumerate(item.meta["answers"]):
        opt = normalise(option)
        pos = said.find(f" {opt} ") if opt else -1
        if pos >= 0:
            hits.append((pos, -len(opt), k))
    if not hits:
        return None, UNPARSEABLE
    hits.sort()
    if len(hits) > 1 and hits[0][:2] == hits[1][:2]:
        return None, AMBIGUOUS
    return hits[0][2], OK


class BBQ:
    name = "bbq"
    family = "bbq"  # the condition library's section for this benchmark
    fields = ("question_text", "dim", "gold_letter")  # what condition texts may use
    description = "BBQ bias benchmark (Parrish et al. 2022): 11 categories, 58,492 items"

    def __init__(self, root: str | None = None):
        self.root = root

    def categories(self) -> list[str]:
        return list(EXPECTED_COUNTS)

    def items(self, categories: Sequence[str] | None = None) -> list[Item]:
        everything = load_all(self.root)
        if not categories:
            return list(everything)
        for c in categories:
            if c not in EXPECTED_COUNTS:
                raise unknown_choice("BBQ category", c, EXPECTED_COUNTS)
        wanted = set(categories)
        return [it for it in everything if it.category in wanted]

    def sample(self, items: list[Item], limit: int | None, seed: int) -> list[Item]:
        return stratified_sample(
            items,
            limit,
            seed,
            lambda it: (it.category, it.meta["context_condition"], it.meta["polarity"]),
        )

    def item_table(self, items: Sequence[Item]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "uid": [it.uid for it in items],
                "category": [it.category for it in items],
                "example_id": [it.meta["example_id"] for it in items],
                "question_index": [it.meta["question_index"] for it in items],
                "polarity": [it.meta["polarity"] for it in items],
                "context_condition": [it.meta["context_condition"] for it in items],
                "label_type": [it.meta["label_type"] for it in items],
                "gold": [it.gold for it in items],
                "unknown_index": [it.meta["unknown_index"] for it in items],
                "target_loc": pd.array([it.meta["target_loc"] for it in items], dtype="Int64"),
                "base_uid": [it.meta.get("base_uid", it.uid) for it in items],
                "order": [it.meta.get("order", "012") for it in items],
                "sample": [it.meta.get("sample", 0) for it in items],
            }
        )

    def parse(self, item: Item, text: str) -> tuple[int | None, str]:
        return parse_answer(item, text)

    def variants(self, items: Sequence[Item], permute: str, **_) -> list[Item]:
        return [permuted(it, o) for it in items for o in orders(permute)]
