"""The one result of scoring a batch, for tables and time series alike (:class:`ScoredBatch`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from .events import EVENT_COLUMNS

#: The columns of :attr:`ScoredBatch.events`.
BATCH_EVENT_COLUMNS = [*EVENT_COLUMNS, "began_before"]


@dataclass(frozen=True)
class ScoredBatch:
    """A batch's scores, the explanation of its flagged rows, and (time series) its expected band
    and events: what :func:`vae_core.score_and_explain` returns for either detector kind.

    The frames are the caller's to keep (nothing else holds them); the dataclass itself is frozen.

    Attributes
    ----------
    scores : DataFrame
        The detector's ``score`` columns (the batch's index and order) and ``top_features``: the
        text of :mod:`vae_core.explain` for flagged rows, ``""`` for the others.
    explanation : DataFrame
        The flagged rows' explanation in long form (``rank``, ``feature``, ``share``,
        ``excess_nll``, ``value``, ``typical``), indexed by their position in the batch.
    band : DataFrame or None
        A time series' expected values of the batch's rows
        (:meth:`~vae_core.TimeSeriesVAEDetector.expected`); None for a table, when nothing is
        flagged, or when it was not asked for.
    events : DataFrame
        :data:`BATCH_EVENT_COLUMNS`: a time series' events with a point in the batch
        (:mod:`vae_core.series_batch`; ``began_before``: it has points before the batch). Empty
        for a table, whose flags are rows, not events.
    event_of_row : ndarray of int64, shape (n_rows,)
        Each row's ``event_id``, -1 outside events (every row of a table).
    groups_events : bool
        Whether the detector groups flags into events (a time series), so that ``events``
        counts them; False for a table.
    """

    scores: pd.DataFrame
    explanation: pd.DataFrame
    band: Optional[pd.DataFrame]
    events: pd.DataFrame
    event_of_row: np.ndarray
    groups_events: bool = False

    @classmethod
    def of_rows(cls, scores: pd.DataFrame, explanation: pd.DataFrame) -> "ScoredBatch":
        """A table's batch: scores and explanation, no band and no events."""
        return cls(scores, explanation, None, pd.DataFrame(columns=BATCH_EVENT_COLUMNS),
                   np.full(len(scores), -1, dtype=np.int64), groups_events=False)

    @property
    def new_events(self) -> Optional[int]:
        """The events that began in this batch (None for a detector without events)."""
        return int((~self.events["began_before"].astype(bool)).sum()) if self.groups_events else None

    @property
    def continued_events(self) -> Optional[int]:
        """The events that began in an earlier batch and go on in this one (None without events)."""
        return int(self.events["began_before"].astype(bool).sum()) if self.groups_events else None
