"""The vae_core detector behind a registered version, with an on-disk download cache.

:func:`load_detector` resolves a ``models:/`` URI once and loads; :func:`load_version` loads a
version already resolved (what the score flow passes to each batch), with no registry call.
Both read the vae_core save folder inside the model (artifact ``detector``), never the pyfunc
wrapper, so a version logged by an older release (a cloudpickled wrapper) loads the same way.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

import mlflow
from mlflow.exceptions import MlflowException

import vae_core
from pipelines.tracking.registry import ModelVersionInfo, resolve
from pipelines.tracking.pyfunc import DETECTOR_ARTIFACT
from pipelines.tracking.store import TrackingError, errors, one_line

_MARKER = ".vae-anomaly-source.json"


def load_detector(
    model_uri: str, cache_dir: Optional[str | Path] = None, device: Optional[str] = None,
) -> tuple[Any, ModelVersionInfo]:
    """The vae_core detector behind a registered model version.

    Parameters
    ----------
    model_uri : str
        ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (resolved with one registry call).
    cache_dir, device
        As in :func:`load_version`.

    Returns
    -------
    (detector, ModelVersionInfo)
    """
    info = resolve(model_uri)
    return load_version(info, cache_dir, device), info


def load_version(info: ModelVersionInfo, cache_dir: Optional[str | Path] = None, device: Optional[str] = None) -> Any:
    """The detector of a resolved version; downloads from ``info.source`` (no registry call).

    Parameters
    ----------
    info : ModelVersionInfo
        From :func:`pipelines.tracking.resolve`.
    cache_dir : path, optional
        Downloads are kept in ``<cache_dir>/<name>/<version>`` and reused while they came from
        the same source and run. ``None``: download to a temporary folder removed after loading.
    device : str, optional
        Passed to :func:`vae_core.load` (default: the detector's configured device).
    """
    if cache_dir is None:
        with tempfile.TemporaryDirectory(prefix="vae-anomaly-download-") as tmp:
            return vae_core.load(detector_dir(_download(info, Path(tmp) / "model")), device=device)
    final = Path(cache_dir).expanduser().absolute() / quote(info.name, safe="") / info.version
    marker = final / _MARKER
    stamp = {"source": info.source, "run_id": info.run_id}
    if not (marker.exists() and json.loads(marker.read_text()) == stamp):
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".tmp-{uuid.uuid4().hex}"
        try:
            _download(info, staging)
            (staging / _MARKER).write_text(json.dumps(stamp))
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(staging, final)
            except OSError:  # a concurrent loader put it there first
                if not marker.exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return vae_core.load(detector_dir(final), device=device)


def _download(info: ModelVersionInfo, dst: Path) -> Path:
    """The version's model folder, downloaded into ``dst`` from its source."""
    dst.mkdir(parents=True, exist_ok=True)
    uri = info.source or info.model_uri  # an info made by hand may lack the source
    with errors(f"cannot download {info.model_uri}"):
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(dst)))


def detector_dir(model_dir: Path) -> Path:
    """The vae_core save folder inside a downloaded pyfunc model (this release's or an older one)."""
    try:
        flavor = mlflow.models.Model.load(str(model_dir)).flavors["python_function"]
        sub = flavor["artifacts"][DETECTOR_ARTIFACT]["path"]
    except (MlflowException, OSError, KeyError, TypeError) as e:
        raise TrackingError(f"{model_dir} is not a vae-anomaly pyfunc model: {one_line(str(e))}") from e
    return Path(model_dir) / sub
