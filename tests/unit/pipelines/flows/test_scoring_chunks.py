"""pipelines.flows.scoring.scored_chunks on a real lake: a table's batch scored in chunks carries each
row's lake key and gets the scores of the whole batch scored at once."""
import pandas as pd

import vae_core
from pipelines.flows.scoring import scored_chunks
from pipelines.lake import META_COLUMNS
from vae_fixtures import assert_scores_close


def test_chunks_carry_the_lake_keys_and_score_like_the_whole_batch(lake, fitted, frame, tmp_path):
    source = tmp_path / "rows.parquet"
    frame.head(30).reset_index(drop=True).to_parquet(source)
    batch = lake.ingest("d", source).batch_id
    chunks = list(scored_chunks(lake, "d", batch, fitted, batch_rows=7))
    assert [len(c.part) for c in chunks] == [7, 7, 7, 7, 2]  # streamed, never more than batch_rows at once
    part = pd.concat([c.part for c in chunks], ignore_index=True)
    assert part["batch_id"].eq(batch).all() and part["_source_row"].tolist() == list(range(30))
    assert list(part.columns[: len(META_COLUMNS)]) == list(META_COLUMNS)
    rows = pd.concat([c.rows for c in chunks], ignore_index=True)
    assert not set(META_COLUMNS) & set(rows.columns)  # the model sees the features only
    whole = vae_core.score_and_explain(fitted, lake.read("d").drop(columns=list(META_COLUMNS))).scores
    scores = part.drop(columns=list(META_COLUMNS))
    assert list(scores.columns) == list(whole.columns)
    numeric = [c for c in whole.columns if c != "top_features"]
    assert_scores_close(scores[numeric], whole[numeric])
