"""Which Arrow file system reads a Delta table's files (pipelines.lake.filesystems): the S3
options delta-rs gets, translated for ``pyarrow.fs.S3FileSystem``. End to end against an S3
server: tests/integration/test_s3_lake.py."""
import logging

import pyarrow.fs as pa_fs
import pytest

from pipelines.lake.delta import delta_storage_options
from pipelines.lake.filesystems import native_filesystem, s3_filesystem

KEYS = {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK"}


def arguments(fs: pa_fs.S3FileSystem) -> dict:
    """The arguments ``fs`` was built with (what it pickles)."""
    return fs.__reduce__()[1][0]


def test_fsspec_options_become_s3filesystem_arguments():
    options = delta_storage_options("s3://b/lake", {"key": "AK", "secret": "SK", "token": "T", "region": "eu-west-1",
                                                    "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}})
    args = arguments(s3_filesystem(options, {}))
    assert (args["access_key"], args["secret_key"], args["session_token"]) == ("AK", "SK", "T")
    assert (args["endpoint_override"], args["scheme"], args["region"]) == ("127.0.0.1:9000", "http", "eu-west-1")
    assert args["allow_bucket_creation"] is False and args["allow_bucket_deletion"] is False


def test_endpoint_and_region_come_from_the_environment_in_delta_rs_order():
    env = {"AWS_ENDPOINT_URL": "http://global:1", "AWS_ENDPOINT_URL_S3": "https://s3only:2", "AWS_DEFAULT_REGION": "ap-south-1"}
    args = arguments(s3_filesystem(KEYS, env))
    assert (args["endpoint_override"], args["scheme"], args["region"]) == ("s3only:2", "https", "ap-south-1")
    given = {**KEYS, "AWS_ENDPOINT_URL": "http://mine:3", "AWS_REGION": "us-west-2"}
    args = arguments(s3_filesystem(given, env))  # delta-rs 1.6 too reads from AWS_ENDPOINT_URL_S3 then
    assert (args["endpoint_override"], args["scheme"], args["region"]) == ("s3only:2", "https", "us-west-2")
    del env["AWS_ENDPOINT_URL_S3"]
    args = arguments(s3_filesystem(given, env))  # an option wins over AWS_ENDPOINT_URL
    assert (args["endpoint_override"], args["scheme"]) == ("mine:3", "http")
    bare = arguments(s3_filesystem({}, {}))  # keys and region then found by the AWS SDK itself
    assert (bare["access_key"], bare["endpoint_override"], bare["scheme"]) == (None, "", "https")


def test_write_only_options_are_ignored_for_reading():
    options = {**KEYS, "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true", "aws_conditional_put": "etag"}
    assert arguments(s3_filesystem(options, {}))["access_key"] == "AK"


@pytest.mark.parametrize("options", [
    {**KEYS, "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "true"},  # no S3FileSystem equivalent
    {"AWS_ACCESS_KEY_ID": "AK"},  # half a key
    {"AWS_SESSION_TOKEN": "T"},
    {**KEYS, "AWS_ENDPOINT_URL": "http://host:9000/prefix"},  # an endpoint with a path
    {**KEYS, "AWS_ENDPOINT_URL": "ftp://host"},
])
def test_options_it_cannot_translate_leave_the_read_to_delta_rs(options, caplog, monkeypatch):
    log = logging.getLogger("pipelines.lake.filesystems")
    # what an earlier test in the process (a CLI run, Prefect's logging set-up) did to the
    # logger does not hide the record: caplog's handler sits on the logger itself
    monkeypatch.setattr(log, "disabled", False)
    log.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.DEBUG, logger="pipelines.lake.filesystems"):
            assert s3_filesystem(options, {}) is None
    finally:
        log.removeHandler(caplog.handler)
    assert "reading through delta-rs" in caplog.text


def test_a_table_uri_picks_its_file_system_rooted_at_the_table(tmp_path):
    s3 = native_filesystem("s3://bucket/lake/d%20x/rows/", KEYS)
    assert isinstance(s3.base_fs, pa_fs.S3FileSystem) and s3.base_path == "bucket/lake/d x/rows/"
    assert native_filesystem("s3a://bucket/t", {}).base_path == "bucket/t/"
    local = native_filesystem((tmp_path / "t").as_uri(), None)
    assert isinstance(local.base_fs, pa_fs.LocalFileSystem) and local.base_path == f"{tmp_path}/t/"
    assert native_filesystem("s3://bucket/t", None) is None  # options the table was opened with unknown
    assert native_filesystem("gs://bucket/t", {}) is None and native_filesystem("az://c/t", {}) is None
