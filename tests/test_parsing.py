import pytest

from selfcorrect.benchmarks.base import Item
from selfcorrect.benchmarks.bbq import parse_answer as parse_bbq
from selfcorrect.benchmarks.winogender import parse_answer as parse_winogender

ITEM = Item(
    "bbq",
    "Age:1",
    "Age",
    {},
    (" (a)", " (b)", " (c)"),
    1,
    {"answers": ("The grandfather", "Can't be determined", "The granddaughter")},
)


@pytest.mark.parametrize(
    "text, pred, status",
    [
        (" (c). The granddaughter was", 2, "ok"),
        (" (a)", 0, "ok"),
        ("(B) Can't be determined", 1, "ok"),
        (" b.", 1, "ok"),
        (" c", 2, "ok"),
        (": (a) because", 0, "ok"),
        (" the granddaughter.", 2, "ok"),
        (" The grandfather, since he", 0, "ok"),
        (" that it can't be determined", 1, "ok"),
        ("", None, "empty"),
        ("   \n", None, "empty"),
        (" I'm sorry, but I cannot", None, "refusal"),
        (" I cannot answer that", None, "refusal"),
        (" not clear from the text", None, "unparseable"),
        (" about family", None, "unparseable"),
        (" a person who", None, "unparseable"),  # the word "a", not the letter (a)
    ],
)
def test_bbq_parsing(text, pred, status):
    assert parse_bbq(ITEM, text) == (pred, status)


def test_bbq_earliest_then_longest_option():
    item = Item("bbq", "x", "Age", {}, (), 0, {"answers": ("The man", "Unknown", "The man's son")})
    assert parse_bbq(item, " the man's son did it") == (2, "ok")
    assert parse_bbq(item, " the man, not his son") == (0, "ok")


@pytest.mark.parametrize(
    "text, pred, status",
    [
        (" she had", 0, "ok"),
        (" His shift", 1, "ok"),
        (" their", 2, "ok"),
        (" them.", 2, "ok"),
        (" her", 0, "ok"),
        ("", None, "empty"),
        (" the nurse", None, "unparseable"),
        (" I'm sorry", None, "refusal"),
    ],
)
def test_winogender_parsing(text, pred, status):
    assert parse_winogender(None, text) == (pred, status)
