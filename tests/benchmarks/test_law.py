"""The law-school benchmark: data checks, G23's prompts, counterfactual pairs, stratified
samples."""

import gzip
import shutil
from pathlib import Path

import pytest

from selfcorrect.backends.base import render_plain
from selfcorrect.benchmarks.law import LawSchool, _student, load_all
from selfcorrect.conditions import load_library, protocol
from selfcorrect.errors import SelfCorrectError
from tests.conditions.test_library import _conversations_at_reads

SNAP = Path(__file__).parents[1] / "conditions" / "snapshots"


def test_every_student_loaded_and_checked():
    items = load_all()
    assert len(items) == 21_791
    first = items[0]
    assert first.uid == "law:0" and first.fields == {"race": "white ", "sex": "female",
                                                     "lsat": "39.0", "gpa": "3.1"}  # fmt: skip


def test_counterfactual_pairs_share_everything_but_race():
    law = LawSchool()
    base = law.sample(law.items(), 20, 0)
    pairs = law.variants(base, "none")
    assert len(pairs) == 40
    lib = load_library()
    cond = lib.get("instruct")
    for black, white in zip(pairs[::2], pairs[1::2], strict=True):
        assert (black.meta["group"], white.meta["group"]) == ("Black", "white")
        assert {k: v for k, v in black.fields.items() if k != "race"} == {
            k: v for k, v in white.fields.items() if k != "race"}  # fmt: skip
        a = protocol(cond, "law", black.fields, 0, lib)[0].text
        b = protocol(cond, "law", white.fields, 0, lib)[0].text
        assert a.replace("a Black ", "a white ") == b and a != b
    both = law.variants(base[:1], "none", counterfactual_mode="both")
    assert [v.meta["group"] for v in both] == ["Black/female", "Black/male", "white/female",
                                               "white/male"]  # fmt: skip
    with pytest.raises(SelfCorrectError, match="unknown counterfactual 'age'"):
        law.variants(base, "none", counterfactual_mode="age")


def test_the_sample_is_stratified_over_lsat_and_gpa_bands():
    law = LawSchool()
    s = law.sample(law.items(), 160, 0)
    cells = {}
    for it in s:
        key = (it.meta["lsat_band"], it.meta["gpa_band"])
        cells[key] = cells.get(key, 0) + 1
    assert len(cells) == 16 and set(cells.values()) == {10}
    assert [it.uid for it in law.sample(law.items(), 80, 0)] == [
        it.uid for it in s if it.uid in {x.uid for x in law.sample(law.items(), 80, 0)}
    ]


def test_bad_data_is_refused_in_one_line(tmp_path):
    root = tmp_path / "law"
    root.mkdir()
    src = Path(__file__).parents[2] / "src" / "selfcorrect" / "data" / "law" / "law_data.csv.gz"
    text = (
        gzip.decompress(src.read_bytes())
        .decode()
        .replace("\n0,White,1,39.0", "\n0,White,3,39.0", 1)
    )
    (root / "law_data.csv.gz").write_bytes(gzip.compress(text.encode()))
    load_all.cache_clear()
    with pytest.raises(SelfCorrectError, match="not the published file"):
        load_all(str(root))
    with pytest.raises(SelfCorrectError, match="malformed law-school data x: row 5"):
        _student({"": "0", "race": "White", "sex": "3", "LSAT": "39", "UGPA": "3.1"}, 5,
                 Path("x"))  # fmt: skip
    with pytest.raises(SelfCorrectError, match="row 6"):
        _student({"": "0", "race": "Martian", "sex": "1", "LSAT": "39", "UGPA": "3.1"}, 6,
                 Path("x"))  # fmt: skip
    shutil.rmtree(root)
    load_all.cache_clear()


def _renders(name, fields, render):
    lib = load_library()
    steps = protocol(lib.get(name), "law", fields, 0, lib)
    return "\n=====\n".join(render(c) for c in _conversations_at_reads(steps))


FIELDS = {"race": "Black ", "sex": "female", "lsat": "39.0", "gpa": "3.1"}


@pytest.mark.parametrize("name", ["baseline", "instruct", "cot"])
def test_g23_prompts_plain_snapshot(name):
    got = _renders(name, FIELDS, render_plain)
    assert got == (SNAP / f"law_{name}_plain.txt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["baseline", "instruct", "cot"])
def test_g23_prompts_chat_snapshot(smollm2, name):
    got = _renders(name, FIELDS, smollm2.render)
    assert got == (SNAP / f"law_{name}_smollm2.txt").read_text()
