"""vae_core.load, score_with_explanations and the one top_features format."""
import re

import numpy as np
import pandas as pd
import pytest

from vae_core import (
    SCORE_COLUMNS, TimeSeriesVAEDetector, VAEDetector, load, score_and_explain, score_with_explanations, top_features_text,
)
from vae_core.explain import MAX_VALUE_CHARS

ITEM = r"[^=, ]+=.+ \(\d+%\)"


def test_load_picks_the_class_from_the_saved_kind(fitted, frame, tmp_path):
    fitted.save(tmp_path / "m")
    det = load(tmp_path / "m", device="cpu")
    assert type(det) is VAEDetector
    pd.testing.assert_frame_equal(det.score(frame), fitted.score(frame))
    pd.testing.assert_frame_equal(VAEDetector.load(tmp_path / "m").score(frame), fitted.score(frame))
    with pytest.raises(ValueError, match="holds a tabular detector, not a timeseries one"):
        TimeSeriesVAEDetector.load(tmp_path / "m")


def test_load_refuses_what_it_cannot_read(fitted, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load(tmp_path)
    fitted.save(tmp_path / "m")
    meta = (tmp_path / "m" / "config.json").read_text()
    (tmp_path / "m" / "config.json").write_text(meta.replace('"kind": "tabular"', '"kind": "graph"'))
    with pytest.raises(ValueError, match=r"unknown detector kind 'graph'"):
        load(tmp_path / "m")


def test_score_with_explanations_explains_the_flagged_rows_only(fitted, frame):
    test = frame.copy()
    test.loc[test.index[[5, 40]], "amount"] = 1e4
    out = score_with_explanations(fitted, test, top_k=2)
    assert list(out.columns) == SCORE_COLUMNS + ["top_features"] and out.index.equals(test.index)
    pd.testing.assert_frame_equal(out[SCORE_COLUMNS], fitted.score(test))
    flagged = out["is_anomaly"].to_numpy()
    assert flagged[[5, 40]].all()
    assert (out.loc[~flagged, "top_features"] == "").all()
    for text in out.loc[flagged, "top_features"]:
        items = text.split(", ")
        assert 1 <= len(items) <= 2 and all(re.fullmatch(ITEM, i) for i in items), text
    assert out["top_features"].iloc[5].startswith("amount=10000.0 (")
    # the same text as the explain() of those rows
    expected = top_features_text(fitted.explain(test[flagged], top_k=2))
    assert out.loc[flagged, "top_features"].to_dict() == expected.to_dict()


def test_score_and_explain_gives_the_flagged_rows_long_form_by_position(fitted, frame):
    test = frame.iloc[:50].copy()
    test.loc[test.index[[7, 30]], "amount"] = 1e4
    got = score_and_explain(fitted, test, top_k=2)
    scores, explanation = got.scores, got.explanation
    assert got.band is None and not got.groups_events and got.new_events is None
    assert len(got.events) == 0 and (got.event_of_row == -1).all() and len(got.event_of_row) == len(test)
    pd.testing.assert_frame_equal(scores, score_with_explanations(fitted, test, top_k=2))
    flagged = np.flatnonzero(scores["is_anomaly"].to_numpy())
    assert sorted(set(explanation.index)) == flagged.tolist() and {7, 30} <= set(flagged)
    expected = fitted.explain(test.iloc[flagged], top_k=2)
    assert explanation["feature"].tolist() == expected["feature"].tolist()


def test_score_with_explanations_keeps_a_repeated_index(fitted, frame):
    test = frame.iloc[:20].copy()
    test.loc[test.index[3], "amount"] = 1e4
    test.index = [0] * 20
    out = score_with_explanations(fitted, test)
    assert out.index.equals(test.index)
    assert out["top_features"].iloc[3].startswith("amount=") and out["top_features"].iloc[4] == ""


def test_top_features_text_format_and_rounding():
    expl = pd.DataFrame(
        {"rank": [1, 2, 3, 1], "feature": ["amount", "channel", "fee", "fee"], "share": [0.81, 0.186, 0.004, 1.0],
         "excess_nll": [5.0, 1.0, 0.1, 3.0], "value": [912.5, "atm", 2.0, np.nan], "typical": [""] * 4},
        index=["r1", "r1", "r1", "r2"],
    )
    text = top_features_text(expl)
    # a share that rounds to 0% is left out
    assert text.to_dict() == {"r1": "amount=912.5 (81%), channel='atm' (19%)", "r2": "fee=nan (100%)"}


def test_a_huge_cell_is_cut_in_explain_and_in_the_text(frame):
    train = frame.copy()
    train["note"] = np.where(np.arange(len(train)) % 2, "short", "long")
    det = VAEDetector(seed=0, max_epochs=3, elbo_samples=2, iwae_samples=2).fit(train)
    test = train.iloc[:10].copy()
    test.loc[test.index[0], "note"] = "x" * 200_000
    expl = det.explain(test, top_k=len(test.columns))
    values = expl["value"][expl["feature"] == "note"]
    assert values.map(lambda v: len(str(v))).max() == MAX_VALUE_CHARS
    assert values.iloc[0] == "x" * (MAX_VALUE_CHARS - 1) + "…"
    text = top_features_text(expl)
    assert text.map(len).max() < 400
