"""``vae-anomaly demo``: the whole path on the committed sample data, from a fresh clone.

Every step is a real flow run in this process, against the configured settings (by default
state under ``.state/``, the lake under ``data/lake``, Prefect's temporary local API)::

    1. ingest batches 1 and 2 of each sample dataset (the history)
    2. train on them: version 1 becomes the champion        (skipped if a champion exists)
    3. ingest what arrives later: batch 3, and transactions_bad.csv (4 rows quarantined)
    4. score every batch with the champion                  (batches already scored are skipped)
    5. retrain on the 3 newest batches: challenger vs champion, promote or keep
                                                            (skipped if this demo did it already)
    6. if the champion changed, score every batch with the new champion
    7. compare the champion's flags with data/samples/*_labels.csv, which no model ever sees

A re-run without ``--fresh`` is safe: ingest skips content already in the lake, scoring skips
batches the model version has scored, and the training steps are skipped as noted. Which
retraining the demo did is remembered in ``<VAE_ANOMALY_HOME>/demo.json``.

Modules by job: :mod:`~pipelines.demo.samples` (the sample datasets), :mod:`~pipelines.demo.state`
(``--fresh`` and ``demo.json``), :mod:`~pipelines.demo.steps` (the run),
:mod:`~pipelines.demo.evaluation` (flags against the labels), :mod:`~pipelines.demo.summary`
(what the CLI prints).
"""
from __future__ import annotations
from pipelines.demo.evaluation import evaluate, labelled_scores, roc_auc, top_anomalies
from pipelines.demo.samples import DATASETS, DEMO_PARAMS, RECENT_BATCHES, SampleDataset
from pipelines.demo.state import DemoError, wipe
from pipelines.demo.steps import run
from pipelines.demo.summary import render, where_to_look

__all__ = [
    "DATASETS", "DEMO_PARAMS", "RECENT_BATCHES", "DemoError", "SampleDataset", "evaluate", "labelled_scores",
    "render", "roc_auc", "run", "top_anomalies", "where_to_look", "wipe",
]
