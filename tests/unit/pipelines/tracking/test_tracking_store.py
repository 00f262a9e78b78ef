"""pipelines.tracking.store and registry, the parts that need no tracking store: model names and
URIs, one-line errors, and which MLflow failures mean "not found"."""
import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE, RESOURCE_DOES_NOT_EXIST

from pipelines.tracking import TrackingError, check_model_name, model_uri, resolve
from pipelines.tracking.store import errors, not_found, one_line


@pytest.mark.parametrize("name", ["transactions", "m.v2_x-1", "0", "a" * 128])
def test_names_that_a_dataset_may_have_are_model_names(name):
    assert check_model_name(name) == name


@pytest.mark.parametrize("name", ["", "-lead", ".hidden", "a b", "a/b", "a" * 129, None, 3])
def test_other_model_names_are_refused_with_the_rule(name):
    with pytest.raises(TrackingError, match=r"invalid model name .*letters, digits, '\.', '_' and '-'"):
        check_model_name(name)


def test_model_uris_by_alias_or_version_and_never_both():
    assert model_uri("m", alias="champion") == "models:/m@champion"
    assert model_uri("m", version=3) == "models:/m/3"
    for bad in ({}, {"alias": "champion", "version": 3}):
        with pytest.raises(ValueError, match="exactly one of alias and version"):
            model_uri("m", **bad)


@pytest.mark.parametrize("uri", ["runs:/abc/model", "models:/m", "models:/m/v3", "models:/m@", "m@champion"])
def test_a_uri_of_another_form_is_refused_before_any_registry_call(uri):
    with pytest.raises(TrackingError, match=r"unsupported model URI .*models:/<name>@<alias> or models:/<name>/<version>"):
        resolve(uri)


def test_one_line_is_the_first_non_empty_line_cut_to_the_limit():
    assert one_line("\n  \n  first line  \nsecond") == "first line"
    assert one_line("") == "unknown error"
    cut = one_line("x" * 400)
    assert len(cut) == 300 and cut.endswith("...")
    assert one_line("abcdef", limit=5) == "ab..."


def test_mlflow_and_os_failures_become_one_line_tracking_errors_with_their_cause():
    cause = MlflowException("RESOURCE_DOES_NOT_EXIST: no model\nTraceback (most recent call last): ...")
    with pytest.raises(TrackingError) as info:
        with errors("cannot read model 'm'"):
            raise cause
    assert str(info.value) == "cannot read model 'm': RESOURCE_DOES_NOT_EXIST: no model" and info.value.__cause__ is cause
    with pytest.raises(TrackingError, match=r"^cannot log: Connection refused$"):
        with errors("cannot log"):
            raise ConnectionRefusedError("Connection refused")
    original = TrackingError("already one line")
    with pytest.raises(TrackingError) as info:
        with errors("outer"):
            raise original
    assert info.value is original  # not wrapped twice
    with pytest.raises(KeyError):  # a bug is not a tracking failure
        with errors("cannot log"):
            raise KeyError("x")


def test_not_found_reads_mlflows_error_code():
    assert not_found(MlflowException("gone", error_code=RESOURCE_DOES_NOT_EXIST))
    assert not not_found(MlflowException("bad", error_code=INVALID_PARAMETER_VALUE))
    assert not not_found(MlflowException("RESOURCE_DOES_NOT_EXIST in the text only"))
