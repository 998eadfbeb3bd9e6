"""Winogender schemas (Rudinger et al. 2018), measured as G23 does: the sentence shown with a
blank, the assistant prefill running up to the blank, the three pronouns of the right case
scored as whole continuations."""

from __future__ import annotations

import csv
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import pandas as pd

from selfcorrect.benchmarks.answers import EMPTY, OK, REFUSAL, REFUSAL_RE, UNPARSEABLE, words
from selfcorrect.benchmarks.base import Item, stratified_sample
from selfcorrect.data import data_dir
from selfcorrect.errors import SelfCorrectError, unknown_choice

# methodology.md section 2: (female, male, neutral) per placeholder case.
PRONOUNS = {
    "$NOM_PRONOUN": ("she", "he", "they"),
    "$ACC_PRONOUN": ("her", "him", "them"),
    "$POSS_PRONOUN": ("her", "his", "their"),
}
CASES = {"$NOM_PRONOUN": "nominative", "$ACC_PRONOUN": "accusative", "$POSS_PRONOUN": "possessive"}
_PLACEHOLDER = re.compile(r"\$(NOM|ACC|POSS)_PRONOUN")
N_TEMPLATES = 120
N_OCCUPATIONS = 60
# "occupation" = G23's 60 templates whose pronoun refers to the occupation (answer 0);
# "all" = all 120 (pronoun referring to the participant too), as the L24 group code uses.
VARIANTS = ("occupation", "all")
PRONOUN_CLASSES = {
    0: {"she", "her", "hers", "herself"},
    1: {"he", "him", "his", "himself"},
    2: {"they", "them", "their", "theirs", "themselves", "themself"},
}


def _read_tsv(path: Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return list(csv.DictReader(fh, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SelfCorrectError(f"cannot read Winogender file {path}: {exc}") from None


def _candidates(prefix: str, words: Sequence[str]) -> tuple[str, ...]:
    """Whole continuations after the prefill: a leading space mid-sentence, a capital at the
    start of a sentence."""
    if not prefix or prefix.rstrip()[-1:] in ".!?":
        words = [w.capitalize() for w in words]
    return tuple((" " if prefix else "") + w for w in words)


def build_item(row: dict, stats: dict[str, dict]) -> Item:
    occupation, participant = row["occupation(0)"], row["other-participant(1)"]
    template = row["sentence"]
    found = _PLACEHOLDER.findall(template)
    if len(found) != 1:
        raise SelfCorrectError(f"Winogender template for {occupation} has {len(found)} pronouns")
    key = f"${found[0]}_PRONOUN"
    sentence = template.replace("$OCCUPATION", occupation).replace("$PARTICIPANT", participant)
    head, tail = sentence.split(key)
    prefix = head.rstrip()
    if occupation not in stats:
        raise SelfCorrectError(f"no occupation statistics for '{occupation}'")
    pct = float(stats[occupation]["bls_pct_female"])
    pct_int = int(round(pct))
    answer = int(row["answer"])
    return Item(
        benchmark="winogender",
        uid=f"{occupation}.{participant}.{answer}",
        category="occupation" if answer == 0 else "participant",
        fields={
            "sentence": f"{head}_{tail}",
            "prefix": prefix,
            "bls_pct_female": str(pct_int),
            "bls_pct_male": str(100 - pct_int),
        },
        candidates=_candidates(prefix, PRONOUNS[key]),
        gold=-1,  # no right answer: the readout is a distribution over pronouns
        meta={
            "occupation": occupation,
            "participant": participant,
            "answer": answer,
            "case": CASES[key],
            "bls_pct_female": pct,
            "bergsma_pct_female": float(stats[occupation]["bergsma_pct_female"]),
        },
    )


def parse_answer(item: Item, text: str) -> tuple[int | None, str]:
    """The first word after the prefill, as female (0), male (1) or neutral (2) pronoun."""
    said = words(text)
    if not said:
        return None, EMPTY
    for k, forms in PRONOUN_CLASSES.items():
        if said[0] in forms:
            return k, OK
    if REFUSAL_RE.match(text.strip()):
        return None, REFUSAL
    return None, UNPARSEABLE


@lru_cache(maxsize=4)
def load_all(root: str | None = None) -> tuple[Item, ...]:
    base = Path(root) if root else data_dir() / "winogender"
    stats_rows = _read_tsv(base / "occupations-stats.tsv")
    rows = _read_tsv(base / "templates.tsv")
    need = {"occupation(0)", "other-participant(1)", "answer", "sentence"}
    if not rows or not need <= set(rows[0]):
        raise SelfCorrectError(f"malformed Winogender templates in {base}: need {sorted(need)}")
    stats = {r["occupation"]: r for r in stats_rows}
    if len(stats) != N_OCCUPATIONS or len(rows) != N_TEMPLATES:
        raise SelfCorrectError(
            f"Winogender data in {base}: {len(rows)} templates and {len(stats)} occupations, "
            f"expected {N_TEMPLATES} and {N_OCCUPATIONS}"
        )
    try:
        return tuple(build_item(r, stats) for r in rows)
    except (KeyError, ValueError) as exc:
        raise SelfCorrectError(f"malformed Winogender data in {base}: {exc}") from None


class Winogender:
    name = "winogender"
    family = "winogender"
    fields = ("sentence", "prefix", "bls_pct_female", "bls_pct_male")
    description = (
        "Winogender schemas (Rudinger et al. 2018): 60 occupations, pronoun probabilities vs "
        "BLS statistics (G23); variant 'all' adds the 60 participant templates"
    )

    def __init__(self, root: str | None = None, variant: str = "occupation"):
        if variant not in VARIANTS:
            raise unknown_choice("Winogender variant", variant, VARIANTS)
        self.root = root
        self.variant = variant
        # a variant is a benchmark of its own name, so results of both can share one store
        self.name = "winogender" if variant == "occupation" else f"winogender-{variant}"

    def categories(self) -> list[str]:
        return ["occupation", "participant"]

    def items(self, categories: Sequence[str] | None = None) -> list[Item]:
        everything = load_all(self.root)
        wanted = set(
            categories
            or (["occupation"] if self.variant == "occupation" else ["occupation", "participant"])
        )
        for c in wanted:
            if c not in self.categories():
                raise unknown_choice("Winogender category", c, self.categories())
        return [it for it in everything if it.category in wanted]

    def sample(self, items: list[Item], limit: int | None, seed: int) -> list[Item]:
        return stratified_sample(items, limit, seed, lambda it: (it.category,))

    def item_table(self, items: Sequence[Item]) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "uid": [it.uid for it in items],
                "category": [it.category for it in items],
                "gold": [it.gold for it in items],
                **{
                    k: [it.meta[k] for it in items]
                    for k in ("occupation", "participant", "answer", "case", "bls_pct_female")
                },
            }
        )

    def parse(self, item: Item, text: str) -> tuple[int | None, str]:
        return parse_answer(item, text)

    def variants(self, items: Sequence[Item], permute: str, **_) -> list[Item]:
        return list(items)  # the pronouns are continuations, not listed options: no order
