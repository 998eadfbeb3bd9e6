"""What the generation readout's parsers share: the parse statuses and how refusals and words
are recognised. Anything that is not clearly one option is unparseable: counted and reported,
never dropped and never taken for the UNKNOWN option."""

from __future__ import annotations

import re

OK, EMPTY, REFUSAL, UNPARSEABLE, AMBIGUOUS = "ok", "empty", "refusal", "unparseable", "ambiguous"
STATUSES = (OK, EMPTY, REFUSAL, UNPARSEABLE, AMBIGUOUS)
REFUSAL_RE = re.compile(
    r"^\W*(i\s*(?:'m| am)\s*(?:sorry|unable|not able)|i\s*can(?:no|')t|as an ai|sorry)",
    re.IGNORECASE,
)
WORD_RE = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    return WORD_RE.findall(text.lower())


def normalise(text: str) -> str:
    """Lower-case words joined by single spaces: option texts are found by whole words."""
    return " ".join(words(text))
