"""Where MLflow keeps runs and models: configuration, the client, and one-line errors.

:func:`configure` points MLflow at a tracking server or a local SQLite store; :func:`client` is
an :class:`mlflow.MlflowClient` on that store for every other module of this package. MLflow
failures become :class:`TrackingError` with a one-line message (see :func:`errors`).
"""
from __future__ import annotations

import contextlib
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator, Optional

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from pipelines.errors import TrackingError
from pipelines.settings import apply_mlflow_env

_state: dict[str, Optional[str]] = {"tracking_uri": None, "artifact_root": None}
_reachable: set[str] = set()  # tracking servers that answered once in this process


def configure(tracking_uri: Optional[str] = None, artifact_root: Optional[str] = None, check: bool = True) -> str:
    """Point MLflow at a tracking store and model registry.

    Parameters
    ----------
    tracking_uri : str, optional
        ``http(s)://`` for a tracking server, ``sqlite:///path.db`` for a local store. ``None``
        keeps MLflow's current choice (an earlier ``configure``, else ``MLFLOW_TRACKING_URI``,
        else MLflow's default).
    artifact_root : str, optional
        Stores the client writes to directly (SQLite, other databases, ``file:``) only: folder
        (path or ``file://`` URI) under which experiments created by this package keep their
        artifacts. Default for SQLite: ``mlartifacts`` next to the database file. A tracking
        server decides its artifact location itself, so this is ignored for ``http(s)://``.
    check : bool
        For a tracking server, make sure it answers (once per process, 5 s timeout). MLflow's
        HTTP retries are also capped here (:func:`pipelines.settings.apply_mlflow_env`), so a
        server that answers but fails every request is reported within seconds.

    Returns
    -------
    str
        The tracking URI in use. The registry URI is set to the same store.
    """
    apply_mlflow_env()
    if check and tracking_uri and re.match(r"^https?://", tracking_uri):
        _check_reachable(tracking_uri)
    with errors("cannot configure MLflow"):
        if tracking_uri:
            mlflow.set_tracking_uri(tracking_uri)
            mlflow.set_registry_uri(tracking_uri)
        uri = mlflow.get_tracking_uri()
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        if artifact_root is None:
            artifact_root = str(db.parent / "mlartifacts")
    _state["tracking_uri"] = uri
    _state["artifact_root"] = artifact_root if _is_client_side_store(uri) else None
    return uri


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Raise :class:`TrackingError` unless the server at ``uri`` answers HTTP at all."""
    if uri in _reachable:
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except urllib.error.HTTPError:
        pass  # it answered (auth, a path prefix...): reachable
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise TrackingError(
            f"cannot reach the MLflow tracking server at {uri} ({one_line(str(reason))}); "
            "start it or point MLFLOW_TRACKING_URI at a running one"
        ) from e
    _reachable.add(uri)


def _sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` URI (None for other URIs and in-memory SQLite)."""
    m = re.match(r"^sqlite:///(.+)$", uri)
    if not m or m.group(1).startswith(":memory:"):
        return None
    return Path(m.group(1).split("?")[0]).absolute()


def _is_client_side_store(uri: str) -> bool:
    """True unless ``uri`` is a server that places artifacts itself."""
    return not re.match(r"^(https?|databricks[^:]*|uc):", uri)


def client() -> MlflowClient:
    """An :class:`mlflow.MlflowClient` on the configured tracking store and registry
    (configured from the environment on first use), for reads this package doesn't wrap."""
    if _state["tracking_uri"] is None:
        configure(None)
    return MlflowClient(tracking_uri=mlflow.get_tracking_uri(), registry_uri=mlflow.get_registry_uri())


@contextlib.contextmanager
def errors(action: str) -> Iterator[None]:
    """Turn MLflow and HTTP failures into a one-line :class:`TrackingError` starting with ``action``."""
    try:
        yield
    except TrackingError:
        raise
    except MlflowException as e:
        raise TrackingError(f"{action}: {one_line(e.message)}") from e
    except OSError as e:  # includes requests' ConnectionError
        raise TrackingError(f"{action}: {one_line(str(e))}") from e


def one_line(text: str, limit: int = 300) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    first = next((line.strip() for line in str(text).splitlines() if line.strip()), "unknown error")
    return first if len(first) <= limit else first[: limit - 3] + "..."


def not_found(e: MlflowException) -> bool:
    """True when MLflow says the entity does not exist."""
    return "RESOURCE_DOES_NOT_EXIST" in str(getattr(e, "error_code", ""))


def get_or_create_experiment(name: str) -> str:
    """The id of experiment ``name``, created (or restored from the trash) when needed.

    Against a local store a new experiment keeps its artifacts under the configured artifact
    root (``<root>/<name>``), not MLflow's default ``./mlruns`` in the current directory.
    """
    c = client()
    with errors(f"cannot open experiment {name!r}"):
        exp = c.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                c.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        location = None
        if _state["artifact_root"]:
            location = _join_uri(_state["artifact_root"], re.sub(r"[^A-Za-z0-9._-]+", "_", name))
        try:
            return c.create_experiment(name, artifact_location=location)
        except MlflowException as e:  # created by a concurrent flow in the meantime
            if "RESOURCE_ALREADY_EXISTS" not in str(getattr(e, "error_code", "")):
                raise
            return c.get_experiment_by_name(name).experiment_id


def _join_uri(root: str, name: str) -> str:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", root):
        return root.rstrip("/") + "/" + name
    return (Path(root).expanduser().absolute() / name).as_uri()
