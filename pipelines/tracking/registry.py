"""The model registry: versions, aliases and the one resolution of a model URI.

Aliases, not the deprecated stages: :func:`apply_new_version_aliases` gives a new version
``challenger``, and ``champion`` too when the model has none; :func:`promote` moves ``champion``.
:func:`resolve` turns ``models:/<name>@<alias>`` or ``models:/<name>/<version>`` into a
:class:`ModelVersionInfo` with one registry call; everything a score run needs afterwards (the
version, its run, where its files are) is in that object, so the registry is not asked again.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import mlflow
from mlflow.exceptions import MlflowException

from pipelines.defaults import CHALLENGER, CHAMPION
from pipelines.tracking.store import TrackingError, client, errors, not_found, one_line

_HINT = "run `vae-anomaly train` first"
# what MLflow's stores accept and a file path cannot escape from (the lake's rule for dataset names)
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_URI_RE = re.compile(r"^models:/([^/@]+)(?:@([^/]+)|/(\d+))/?$")


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered model version.

    Attributes
    ----------
    name, version : str
        Registered model name and version number (as a string, like MLflow).
    run_id : str or None
        The training run that logged it.
    model_uri : str
        ``models:/<name>/<version>``: a URI that keeps pointing at this exact version.
    aliases : tuple of str
        Aliases on the version when this object was made.
    source : str
        Where the version's files are (``models:/<model_id>`` for a logged model): downloads
        read this, so they need no registry call.
    """

    name: str
    version: str
    run_id: Optional[str]
    model_uri: str
    aliases: tuple[str, ...] = ()
    source: str = ""


def check_model_name(name: str) -> str:
    """``name`` if it can be a registered model name here, else :class:`TrackingError`.

    Letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit, at most 128
    characters: the rule for dataset names, so a dataset's default model name always passes.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise TrackingError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' and '-' (at most 128, "
            "starting with a letter or digit)"
        )
    return name


def model_uri(name: str, alias: Optional[str] = None, version: Optional[str | int] = None) -> str:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` (give exactly one of them)."""
    if (alias is None) == (version is None):
        raise ValueError("give exactly one of alias and version")
    return f"models:/{name}@{alias}" if alias is not None else f"models:/{name}/{version}"


def _version_info(mv: Any) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=mv.name, version=str(mv.version), run_id=mv.run_id or None,
        model_uri=model_uri(mv.name, version=mv.version), aliases=tuple(mv.aliases or ()),
        source=str(mv.source or ""),
    )


def get_version(name: str, version: str | int) -> ModelVersionInfo:
    """Version ``version`` of registered model ``name`` (one registry call)."""
    try:
        return _version_info(client().get_model_version(name, str(version)))
    except MlflowException as e:
        if not_found(e):
            raise TrackingError(f"no version {version} of registered model {name!r}; {_HINT}") from e
        raise TrackingError(f"cannot read version {version} of model {name!r}: {one_line(e.message)}") from e


def find_alias(name: str, alias: str) -> Optional[ModelVersionInfo]:
    """The version behind ``alias`` of model ``name``, or None when the model has no such alias
    (one registry call; a missing model is a :class:`TrackingError`)."""
    try:
        return _version_info(client().get_model_version_by_alias(name, alias))
    except MlflowException as e:
        if not_found(e):  # the registered model does not exist
            raise TrackingError(f"no registered model {name!r} (looked for its {alias!r} version); {_HINT}") from e
        if "not found" in str(e.message):  # the model exists, the alias does not
            return None
        raise TrackingError(f"cannot read alias {alias!r} of model {name!r}: {one_line(e.message)}") from e


def get_alias(name: str, alias: str) -> ModelVersionInfo:
    """The version behind ``alias`` of model ``name`` (one registry call)."""
    info = find_alias(name, alias)
    if info is None:
        raise TrackingError(f"no model version with alias {alias!r} for model {name!r}; {_HINT}")
    return info


def resolve(uri: str) -> ModelVersionInfo:
    """The registered version behind ``models:/<name>@<alias>`` or ``models:/<name>/<version>``."""
    m = _URI_RE.match(uri.strip())
    if not m:
        raise TrackingError(
            f"unsupported model URI {uri!r}; expected models:/<name>@<alias> or models:/<name>/<version>"
        )
    name, alias, version = m.groups()
    return get_version(name, version) if version is not None else get_alias(name, alias)


def get_aliases(name: str) -> dict[str, str]:
    """Alias -> version of registered model ``name`` (empty when the model does not exist)."""
    try:
        model = client().get_registered_model(name)
    except MlflowException as e:
        if not_found(e):
            return {}
        raise TrackingError(f"cannot read registered model {name!r}: {one_line(e.message)}") from e
    return {str(k): str(v) for k, v in (model.aliases or {}).items()}


def get_alias_version(name: str, alias: str) -> Optional[str]:
    """The version that ``alias`` points at, or None when the alias or the model doesn't exist."""
    return get_aliases(name).get(alias)


def require_model(name: str) -> None:
    """Raise :class:`TrackingError` unless registered model ``name`` exists (one registry call).

    For the flows that must fail before any work when a model name is mistyped.
    """
    check_model_name(name)
    try:
        client().get_registered_model(name)
    except MlflowException as e:
        if not_found(e):
            raise TrackingError(f"no registered model {name!r}; {_HINT}") from e
        raise TrackingError(f"cannot read registered model {name!r}: {one_line(e.message)}") from e


def set_alias(name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` of model ``name`` at ``version`` (moving it from any other version)."""
    with errors(f"cannot set alias {alias!r} of model {name!r} to version {version}"):
        client().set_registered_model_alias(name, alias, str(version))


def promote(name: str, version: str | int, alias: str = CHAMPION) -> Optional[str]:
    """Make ``version`` the ``alias`` (champion) of model ``name``.

    Returns
    -------
    str or None
        The version that held the alias before (None if none did), for logs and rollback.
    """
    get_version(name, version)  # a clear error for a version that does not exist
    previous = get_alias_version(name, alias)
    set_alias(name, alias, version)
    return previous


def apply_new_version_aliases(name: str, version: str | int) -> list[str]:
    """Aliases for a freshly registered version: ``challenger``, plus ``champion`` if there is none.

    Returns the aliases set. The one place this policy is written: the train and retrain flows
    call it through their ``set-aliases`` task.
    """
    set_alias(name, CHALLENGER, version)
    if get_alias_version(name, CHAMPION) is None:
        set_alias(name, CHAMPION, version)
        return [CHALLENGER, CHAMPION]
    return [CHALLENGER]


def register(
    source_uri: str, name: str, *, run_id: Optional[str] = None, tags: Optional[Mapping[str, Any]] = None,
) -> ModelVersionInfo:
    """Register the logged model at ``source_uri`` as a new version of ``name`` (no aliases).

    Parameters
    ----------
    source_uri : str
        A logged model: ``models:/<model_id>`` (what ``Model.log`` returns) or ``runs:/...``.
    name : str
        Registered model name (created on first use; checked by :func:`check_model_name`).
    run_id : str, optional
        Only used in error messages.
    tags : dict, optional
        Model version tags.
    """
    check_model_name(name)
    with errors(f"cannot register {source_uri} as model {name!r}" + (f" (run {run_id})" if run_id else "")):
        mv = mlflow.register_model(source_uri, name, tags={str(k): str(v) for k, v in (tags or {}).items()})
    return _version_info(mv)
