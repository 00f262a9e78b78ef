"""Errors that code which must not import MLflow still recognises."""
from __future__ import annotations


class TrackingError(RuntimeError):
    """A tracking or registry operation failed; the message is one line and says what to do.

    Raised by :mod:`pipelines.tracking` (which re-exports it); defined here, outside the only
    importer of MLflow, so that the flows' retry rule can recognise it without importing MLflow."""
