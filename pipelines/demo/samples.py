"""The sample datasets of ``data/samples`` and the demo's settings."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

#: Detector settings for the demo: fewer epochs than the default 200, to stay within a few
#: minutes on two CPU cores (early stopping usually ends training before this anyway).
DEMO_PARAMS = {"max_epochs": 60}
#: torch threads unless OMP_NUM_THREADS says otherwise. These models are small: on a shared
#: two-core machine one thread fitted the transactions model in 3.7 s, two threads took 47 s.
DEMO_THREADS = 1
RECENT_BATCHES = 3
TOP_N = 10
STATE_FILE = "demo.json"


@dataclass(frozen=True)
class SampleDataset:
    """One sample dataset of ``data/samples`` and how the demo feeds it."""

    name: str
    history: tuple[str, ...]  # ingested before the first training
    later: tuple[str, ...]  # ingested after it
    labels: str
    keys: tuple[str, ...]  # columns that join lake rows to the labels
    time_column: Optional[str] = None
    series_column: Optional[str] = None
    exclude: tuple[str, ...] = ()  # columns the model must not see


DATASETS = (
    SampleDataset(
        "transactions",
        history=("transactions_batch1.csv", "transactions_batch2.parquet"),
        later=("transactions_batch3.jsonl", "transactions_bad.csv"),
        labels="transactions_labels.csv",
        keys=("txn_id",),
        exclude=("txn_id",),  # a unique, increasing key: every new batch would look unusual
    ),
    SampleDataset(
        "sensors",
        history=("sensors_batch1.csv", "sensors_batch2.parquet"),
        later=("sensors_batch3.jsonl",),
        labels="sensors_labels.csv",
        keys=("timestamp", "sensor"),
        time_column="timestamp",
        series_column="sensor",
    ),
)
