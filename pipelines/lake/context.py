"""The context of a time-series batch: each of its series' last points before it, from the lake."""
from __future__ import annotations

from typing import Any, Optional

import pandas as pd


def series_context(lake: Any, dataset: str, batch_id: str, rows: pd.DataFrame, time: str, series: Optional[str],
                   values: list[str], need: int) -> Optional[pd.DataFrame]:
    """The last ``need`` points of each series of ``rows`` (a batch of ``dataset``) before the
    series' first point in the batch, from the batches ingested before it (the previous one, then
    the two before, the four before those ..., until every series has its points or no batch is
    left); a series with fewer has its whole history there. Columns ``time``, ``series`` (when
    given) and ``values``, in time order. None for a first batch.
    """
    earlier = [r.batch_id for r in lake.list_batches(dataset)]
    earlier = earlier[: earlier.index(batch_id)][::-1]
    key = (lambda f: f[series].astype(str)) if series else (lambda f: pd.Series("", index=f.index))  # noqa: E731
    first = rows[time].groupby(key(rows)).min()
    columns = [time] + ([series] if series else []) + list(values)
    found, lo, step = [], 0, 1
    while lo < len(earlier) and need > 0:
        part = lake.read(dataset, batch_ids=earlier[lo : lo + step], columns=columns)
        found.append(part[(part[time] < key(part).map(first)).to_numpy(bool)])
        counts = pd.concat(found).pipe(key).value_counts()
        if counts.reindex(first.index, fill_value=0).min() >= need:
            break
        lo, step = lo + step, 2 * step
    if not found:
        return None
    before = pd.concat(found, ignore_index=True).sort_values(time, kind="stable")
    return before.groupby(key(before), sort=False).tail(need).reset_index(drop=True)
