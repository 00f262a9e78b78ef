"""The demo's state: what ``--fresh`` wipes, and which retraining the demo did (``demo.json``)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Optional
from urllib.parse import urlparse

from pipelines.demo.samples import DATASETS, STATE_FILE
from pipelines.lake import Lake
from pipelines.settings import Settings


class DemoError(Exception):
    """The demo cannot run as configured (e.g. ``--fresh`` against a store it must not wipe)."""


def _local_path(uri: str) -> Optional[Path]:
    """The file behind a ``sqlite:///`` or ``file://`` URI or a plain path; ``None`` for servers."""
    if uri.startswith("sqlite:///"):
        return Path(uri[len("sqlite:///"):]).absolute()
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(parsed.path).absolute()
    if not parsed.scheme or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return Path(uri).absolute()
    return None


def _inside(path: Optional[Path], folder: Path) -> bool:
    return path is not None and (path == folder or folder in path.parents)


def wipe(settings: Settings) -> list[str]:
    """Delete what the demo made: its lake datasets, and the tracking store, Prefect home and demo
    state when they are the local ones under ``VAE_ANOMALY_HOME``.

    Raises
    ------
    DemoError
        The tracking store is elsewhere (a server, or a file outside ``VAE_ANOMALY_HOME``): the
        demo does not delete a store it did not create.
    """
    home = settings.home.absolute()
    store = _local_path(settings.mlflow_tracking_uri)
    if not _inside(store, home):
        raise DemoError(
            f"--fresh only wipes a tracking store under VAE_ANOMALY_HOME ({home}); MLFLOW_TRACKING_URI is "
            f"{settings.mlflow_tracking_uri}: unset it, or remove the demo's models there yourself"
        )
    removed = []
    lake = Lake(settings.lake_url)
    for ds in DATASETS:
        folder = f"{lake.root}/{ds.name}"
        if lake.fs.exists(folder):
            lake.fs.rm(folder, recursive=True)
            removed.append(folder)
    local = [store, Path(f"{store}-journal"), _local_path(settings.mlflow_artifact_root), home / STATE_FILE]
    if settings.prefect_api_url is None:  # the temporary API keeps its database in PREFECT_HOME
        local.append(settings.prefect_home.absolute())
    for path in local:
        empty_dir = path is not None and path.is_dir() and not any(path.iterdir())
        if _inside(path, home) and path.exists() and not empty_dir:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
            removed.append(str(path))
    return removed


def load_state(settings: Settings) -> dict:
    path = settings.home / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def save_state(settings: Settings, state: dict) -> None:
    path = settings.home / STATE_FILE
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)
