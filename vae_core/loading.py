"""``load``: the detector saved in a folder, of the class its ``config.json`` names."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from .base import read_meta
from .detector import VAEDetector
from .timeseries import TimeSeriesVAEDetector

DETECTORS = {cls.kind: cls for cls in (VAEDetector, TimeSeriesVAEDetector)}


def load(directory: str | Path, device: Optional[str] = None) -> Union[VAEDetector, TimeSeriesVAEDetector]:
    """Load a saved detector, tabular or time series, from the kind recorded when it was saved.

    Parameters
    ----------
    directory : str or Path
        A folder written by ``VAEDetector.save`` or ``TimeSeriesVAEDetector.save``.
    device : {"cpu", "cuda"}, optional
        Where to run; default: the saved config's ``device`` setting.

    Returns
    -------
    VAEDetector or TimeSeriesVAEDetector

    Raises
    ------
    FileNotFoundError
        When ``directory`` holds no ``config.json``.
    ValueError
        When the saved format or kind is unknown.
    """
    meta = read_meta(directory)  # parsed once, handed to the class
    kind = meta.get("kind")
    if kind not in DETECTORS:
        raise ValueError(f"{Path(directory)}: unknown detector kind {kind!r} (known: {', '.join(DETECTORS)})")
    return DETECTORS[kind].from_saved(directory, meta, device)
