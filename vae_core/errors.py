"""Exceptions raised by vae_core."""


class DataError(ValueError):
    """Input data the detector cannot use; the message names the column (and row where known)."""


class NotFittedError(RuntimeError):
    """A method that needs a fitted detector was called before ``fit``."""
