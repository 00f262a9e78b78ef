"""Arrow's own file systems for reading a Delta table's files: local disks and S3.

:func:`native_filesystem` turns a table's URI and its delta-rs storage options into a
``pyarrow.fs`` file system rooted at the table, or ``None`` when it cannot (then delta-rs's
Python handler reads; :func:`pipelines.lake.delta.arrow_dataset` says why that is avoided).
On S3 it reads from the endpoint delta-rs reads the table's log from; in delta-rs 1.6 (checked
against moto) that is ``AWS_ENDPOINT_URL_S3`` from the environment, else the endpoint option,
else ``AWS_ENDPOINT_URL`` or ``AWS_ENDPOINT`` from the environment. The region is the option's,
else ``AWS_REGION`` / ``AWS_DEFAULT_REGION``. Keys and session token left unset are found by
Arrow's AWS SDK (environment, profile files, instance metadata).

``gs://`` and ``az://``/``abfs[s]://`` tables keep delta-rs's handler: Arrow's
``GcsFileSystem`` takes no service-account key (delta-rs's usual GCS credential) and its
``AzureFileSystem`` names its options differently, and neither could be tested here against a
real or emulated server. A CLI command that read through the handler ends without the
interpreter's finalization (:func:`pipelines.cli.lifecycle.finish`), where the abort happens.
"""
from __future__ import annotations

import logging
import os
from typing import Mapping, Optional
from urllib.parse import unquote, urlparse

import pyarrow.fs as pa_fs

log = logging.getLogger(__name__)

#: delta-rs (object_store) S3 option, lower-cased, -> ``pyarrow.fs.S3FileSystem`` argument
_S3_ARGS = {
    "aws_access_key_id": "access_key", "access_key_id": "access_key",
    "aws_secret_access_key": "secret_key", "secret_access_key": "secret_key",
    "aws_session_token": "session_token", "aws_token": "session_token", "session_token": "session_token",
    "token": "session_token",
    "aws_region": "region", "aws_default_region": "region", "region": "region",
    "aws_endpoint_url": "endpoint", "aws_endpoint": "endpoint", "endpoint_url": "endpoint", "endpoint": "endpoint",
}
#: options that change how delta-rs writes or commits, not what a reader sees (plain http is
#: allowed here by the endpoint's own scheme)
_S3_WRITE_ONLY = frozenset({
    "aws_allow_http", "allow_http", "aws_s3_allow_unsafe_rename", "aws_conditional_put", "conditional_put",
    "aws_s3_locking_provider", "delta_dynamo_table_name", "aws_copy_if_not_exists", "copy_if_not_exists",
})
#: where delta-rs looks for an endpoint no option gives (after AWS_ENDPOINT_URL_S3), first found wins
_ENDPOINT_ENV = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT")
_REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")


def native_filesystem(table_uri: str, options: Optional[Mapping[str, str]]) -> Optional[pa_fs.FileSystem]:
    """A file system whose root is the table's folder (delta-rs names a table's files relative to
    it), for ``file://`` and ``s3://``/``s3a://`` tables; ``None`` for other schemes, for options
    it cannot translate, and for an S3 table whose ``options`` are not known (``None``)."""
    uri = urlparse(table_uri)
    path = unquote(uri.path).rstrip("/")
    if uri.scheme == "file":
        return pa_fs.SubTreeFileSystem(path or "/", pa_fs.LocalFileSystem())
    if uri.scheme in ("s3", "s3a") and uri.netloc and options is not None:
        s3 = s3_filesystem(options, os.environ)
        return None if s3 is None else pa_fs.SubTreeFileSystem(f"{uri.netloc}{path}", s3)
    return None


def s3_filesystem(options: Mapping[str, str], environ: Mapping[str, str]) -> Optional[pa_fs.S3FileSystem]:
    """``S3FileSystem`` with delta-rs's S3 ``options`` (falling back to ``environ`` for the endpoint
    and region), or ``None`` (logged at debug) for options it has no equivalent for."""
    args: dict[str, str] = {}
    for name, value in options.items():
        key = name.lower()
        if key in _S3_ARGS:
            args[_S3_ARGS[key]] = str(value)
        elif key not in _S3_WRITE_ONLY:
            log.debug("S3 option %r has no pyarrow.fs.S3FileSystem equivalent: reading through delta-rs", name)
            return None
    if ("access_key" in args) != ("secret_key" in args) or ("session_token" in args and "access_key" not in args):
        log.debug("S3 options give part of a key (%s): reading through delta-rs", sorted(args))
        return None
    given = args.pop("endpoint", None)  # the AWS SDK's service-specific variable wins over it, as in delta-rs
    endpoint = _first(environ, ("AWS_ENDPOINT_URL_S3",)) or given or _first(environ, _ENDPOINT_ENV)
    region = args.pop("region", None) or _first(environ, _REGION_ENV)
    if endpoint:
        parsed = urlparse(endpoint if "://" in endpoint else f"https://{endpoint}")
        if parsed.scheme not in ("http", "https") or parsed.path.strip("/") or not parsed.netloc:
            log.debug("S3 endpoint %r is not scheme://host[:port]: reading through delta-rs", endpoint)
            return None
        args.update(endpoint_override=parsed.netloc, scheme=parsed.scheme)
    if region:
        args["region"] = region
    return pa_fs.S3FileSystem(allow_bucket_creation=False, allow_bucket_deletion=False, **args)


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> Optional[str]:
    """The first of ``names`` set (non-empty) in ``environ``."""
    return next((environ[n] for n in names if environ.get(n)), None)
