import pandas as pd

from selfcorrect.metrics.rounds import bbq_states, pronoun_states, transitions


def frame(preds_by_round, gold=(1, 0, 2), target=(0, 0, 2), unknown=(1, 1, 1)):
    rows = []
    for rnd, preds in enumerate(preds_by_round):
        for i, p in enumerate(preds):
            rows.append(
                {
                    "model": "m",
                    "condition": "c",
                    "readout": "logprob",
                    "uid": f"u{i}",
                    "round": rnd,
                    "pred": p,
                    "gold": gold[i],
                    "target_loc": target[i],
                    "unknown_index": unknown[i],
                }
            )
    df = pd.DataFrame(rows)
    df["pred"] = df["pred"].astype("Int64")
    df["target_loc"] = df["target_loc"].astype("Int64")
    return df


def test_transition_counts_hand_made():
    # item 0: ambiguous-like, gold UNKNOWN(1), target 0: biased 0 -> UNKNOWN 1 (wrong->correct)
    # item 1: gold 0 = target: correct biased 0 -> unparseable (readable->unreadable)
    # item 2: gold 2 = target: UNKNOWN 1 -> 2 (wrong->correct, UNKNOWN->answer, ->biased)
    df = frame([[0, 0, 1], [1, None, 2]])
    matrix, flips = transitions(df, bbq_states(df))
    f = flips.iloc[0]
    assert (f.n, f.flips) == (3, 3) and f.flip_rate == 1.0
    # item 1's correct -> unparseable is neither an error nor a correction: counted apart
    assert f["wrong->correct"] == 2 and f["correct->wrong"] == 0
    assert f["readable->unreadable"] == 1 and f["unreadable->readable"] == 0
    assert f["biased->unbiased"] == 1 and f["unbiased->biased"] == 1
    assert f["answer->UNKNOWN"] == 1 and f["UNKNOWN->answer"] == 1
    ans = matrix[matrix.kind == "answer"].set_index(["from", "to"])["n"].to_dict()
    assert ans == {("biased", "UNKNOWN"): 1, ("biased", "unparseable"): 1, ("UNKNOWN", "biased"): 1}
    corr = matrix[matrix.kind == "correctness"].set_index(["from", "to"])["n"].to_dict()
    assert corr == {("wrong", "correct"): 2, ("correct", "unparseable"): 1}


def test_three_rounds_and_no_change():
    df = frame([[0, 0, 1], [0, 0, 1], [1, 0, 1]])
    _, flips = transitions(df, bbq_states(df))
    assert list(flips["from_round"]) == [0, 1]
    assert list(flips["flips"]) == [0, 1]
    assert transitions(frame([[0, 0, 1]]), bbq_states(frame([[0, 0, 1]])))[0].empty


def test_pronoun_states():
    df = frame([[0, 1, 2], [2, 1, None]])
    matrix, flips = transitions(df, pronoun_states(df))
    assert flips.iloc[0].flips == 2
    got = matrix.set_index(["from", "to"])["n"].to_dict()
    assert got == {("female", "neutral"): 1, ("male", "male"): 1, ("neutral", "unparseable"): 1}
