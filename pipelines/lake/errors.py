"""The lake's exceptions: one base class, so callers can catch every data problem at once."""
from __future__ import annotations


class LakeError(Exception):
    """Base class of the lake's errors (also raised for bad names and unknown datasets)."""


class SchemaError(LakeError):
    """A batch does not fit the dataset's schema (missing, retyped or unexpected columns)."""


class SourceError(LakeError):
    """A source file cannot be read or parsed as a table."""


class SchemaRace(LakeError):
    """Another writer committed the dataset's first batch, with another schema, since this
    batch was validated: validate it again."""
