"""Every shipped condition's provenance, per benchmark, pinned: a text is verbatim only where
the cited study's material is reproduced character for character."""

from selfcorrect.conditions import load_library

PROVENANCE = {
    ("baseline", "bbq"): "verbatim", ("baseline", "winogender"): "verbatim",
    ("instruct", "bbq"): "verbatim", ("instruct", "winogender"): "verbatim",
    ("cot", "bbq"): "verbatim", ("cot", "winogender"): "verbatim",
    ("match_stats", "winogender"): "verbatim",
    ("negation", "bbq"): "verbatim", ("negation", "winogender"): "reconstruction",
    ("oracle", "bbq"): "reconstruction", ("oracle", "winogender"): "verbatim",
    ("baseline", "law"): "verbatim", ("instruct", "law"): "verbatim", ("cot", "law"): "verbatim",
    ("negation", "law"): "reconstruction", ("prefer-unknown", "bbq"): "reconstruction",
    **{(f"s{k}", b): "reconstruction" for k in (2, 3, 4) for b in ("bbq", "winogender", "law")},
    **{(f"s{k}-neg", b): "reconstruction" for k in (2, 3, 4)
       for b in ("bbq", "winogender", "law")},
}  # fmt: skip


def test_every_condition_provenance_per_benchmark():
    lib = load_library()
    got = {(c.name, b): c.provenance_for(b)[0] for c in lib.conditions.values() for b in c.steps}
    assert got == PROVENANCE


def test_sources_name_where_texts_come_from():
    lib = load_library()
    assert "can not determine" in lib.get("oracle").provenance_for("bbq")[1]
    assert "2406.02378" in lib.get("oracle").provenance_for("winogender")[1]
    assert "ours" in lib.get("negation").provenance_for("winogender")[1]
    assert lib.get("instruct").provenance_for("law")[1] == "G23 Table 3"
    assert lib.feedback_provenance[0] == "verbatim"
    assert (
        "2406.02378" in lib.feedback_provenance[1] and "not from L24" in lib.feedback_provenance[1]
    )
