"""What the score, report and threshold flows share to score with a registered version: the
version resolved once (:class:`ScoreModel`), its detector loaded once per process and handed out
as a copy (:class:`DetectorCache`), and a lake batch scored chunk by chunk (:func:`scored_chunks`).

A batch is scored by one call for either detector kind, :func:`vae_core.score_and_explain`; the
detector says what it needs of the lake (a whole batch or chunks of rows, the points of each
series before the batch), so nothing here asks which kind of detector it holds.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable, Hashable, Iterator, Optional

import pandas as pd

import vae_core
from pipelines import nodes
from pipelines.flows.common import io_task, tracking_for
from pipelines.lake import META_COLUMNS
from pipelines.lake.context import series_context
from pipelines.lake.storage import to_pandas


@dataclass(frozen=True)
class ScoreModel:
    """The registered version a run scores with, resolved once, and the lake key of its scores."""

    info: Any  # a pipelines.tracking.ModelVersionInfo (not imported here: importing a flow imports no MLflow)
    scores_key: str
    point_score: Optional[str] = None  # a time series' per-point mode: "last" (causal) or "mean" (offline)


@dataclass(frozen=True)
class ScoreChunk:
    """One scored chunk of a batch: ``part``, the lake keys, the detector's key columns and the
    scores to write; ``rows``, the chunk's feature rows; ``scored``, the detector's result
    (:class:`vae_core.ScoredBatch`: explanation by position in ``part``, band, events)."""

    part: pd.DataFrame
    rows: pd.DataFrame
    scored: vae_core.ScoredBatch


class DetectorCache:
    """Detectors loaded once per process (and per Dask worker) by ``load(key)``, at most
    ``size`` of them, least recently used dropped first.

    :meth:`get` returns a shallow copy of the cached detector, never the cached object, so a
    caller may recalibrate it or rebind its attributes (as the threshold flow does) without
    changing what the next caller gets. The copy shares the network, the preprocessing and
    the calibration scores, which scoring only reads; the calibration scores are made
    read-only, so a write to them fails instead of reaching every later caller.
    """

    def __init__(self, load: Callable[[Hashable], Any], size: int = 4) -> None:
        self.load, self.size = load, size
        self.loaded: OrderedDict[Hashable, Any] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        """A copy of the detector of ``key``, loaded on first use."""
        with self.lock:
            det = self.loaded.pop(key, None)
        if det is None:
            det = self.load(key)
            det.calibration_.scores.flags.writeable = False
        with self.lock:
            self.loaded[key] = det
            while len(self.loaded) > self.size:
                self.loaded.popitem(last=False)
        return copy.copy(det)

    def clear(self) -> None:
        """Forget every loaded detector."""
        with self.lock:
            self.loaded.clear()


def _load_version(key: tuple[Any, Optional[str]]) -> Any:
    info, tracking_uri = key
    return tracking_for(tracking_uri).load_version(info)


DETECTORS = DetectorCache(_load_version)


def scoring_detector(model: ScoreModel, tracking_uri: Optional[str]):
    """A copy of the loaded detector of ``model`` (:class:`DetectorCache`), scoring in its
    point-score mode."""
    det = DETECTORS.get((model.info, tracking_uri))
    return det.with_point_score(model.point_score) if model.point_score else det


@io_task("resolve-model")
def resolve_model(tracking_uri: Optional[str], model_name: str, alias: str, version: Optional[str]) -> ScoreModel:
    """The registry version to score with: ``version`` if given, else the one behind ``alias``.

    One registry call; a missing model, alias or version is a TrackingError (not retried)."""
    tracking = tracking_for(tracking_uri)
    tracking.check_model_name(model_name)
    info = tracking.get_version(model_name, version) if version is not None else tracking.get_alias(model_name, alias)
    return ScoreModel(info, nodes.score_label(model_name, info.version))


@io_task("resolve-point-score")
def resolve_point_score(model: ScoreModel, point_score: str, tracking_uri: Optional[str]) -> ScoreModel:
    """``model`` in ``point_score`` mode for a detector with per-point modes (a model that cannot
    score in it fails here, before any work); offline scores get their own key
    (``<model>-v<N>-offline``), so a version's causal scores are never mixed with them. A
    table's detector has no modes: ``model`` as it is."""
    det = DETECTORS.get((model.info, tracking_uri))
    if not det.point_score_modes:
        return model
    det.with_point_score(point_score)
    return replace(model, scores_key=nodes.mode_scores_key(model.scores_key, point_score), point_score=point_score)


def batch_frames(lake, dataset: str, batch_id: str, det, batch_rows: int) -> Iterator[pd.DataFrame]:
    """The batch's rows as the detector scores them: whole (a series' windows need their
    neighbours) or streamed in Arrow record batches of ``batch_rows`` rows."""
    if det.scores_whole_batches:
        yield lake.read(dataset, batch_ids=[batch_id])
        return
    for b in lake.iter_record_batches(dataset, [batch_id], batch_size=batch_rows):
        yield to_pandas(b)


def batch_context(lake, dataset: str, batch_id: str, rows: pd.DataFrame, det) -> Optional[pd.DataFrame]:
    """The points of each series before the batch that the detector needs to score it
    (``det.batch_context_points`` of them; :func:`pipelines.lake.context.series_context`), None
    when it needs none."""
    need = det.batch_context_points
    if not need:
        return None
    time, *series = det.key_columns_
    return series_context(lake, dataset, batch_id, rows, time, series[0] if series else None,
                          list(det.value_columns_), need)


def scored_chunks(lake, dataset: str, batch_id: str, det, batch_rows: int) -> Iterator[ScoreChunk]:
    """Score a lake batch chunk by chunk (:func:`batch_frames`), each after its context
    (:func:`batch_context`): in a series' causal mode the scores are those of one long series,
    whatever the batch boundaries, and an event that began in an earlier batch keeps its start."""
    for chunk in batch_frames(lake, dataset, batch_id, det, batch_rows):
        keys = chunk[list(META_COLUMNS)].reset_index(drop=True)  # the row's key in the lake
        rows = nodes.feature_frame(chunk).reset_index(drop=True)
        scored = vae_core.score_and_explain(det, rows, context=batch_context(lake, dataset, batch_id, rows, det))
        part = pd.concat([keys, chunk[det.key_columns_].reset_index(drop=True), scored.scores], axis=1)
        yield ScoreChunk(part, rows, scored)
