"""`train --duplicates`: the same as --param duplicates=..., checked against the config before any work."""
import pytest

from pipelines.cli import UsageError, parse_args
from pipelines.cli.commands import param_values


def test_duplicates_is_a_detector_param_for_the_train_flow():
    args = parse_args(["train", "sensors", "--param", "window=16", "--duplicates", "mean", "--param", "max_epochs=5"])
    assert args.param == ["window=16", "duplicates=mean", "max_epochs=5"]
    assert param_values(args.param) == {"window": 16, "duplicates": "mean", "max_epochs": 5}
    assert param_values(parse_args(["train", "sensors", "--duplicates", "first"]).param) == {"duplicates": "first"}
    assert parse_args(["train", "sensors"]).param is None  # the default: repeats refused


def test_an_unknown_duplicates_rule_is_a_usage_error():
    with pytest.raises(UsageError, match=r"--duplicates: invalid choice: 'max'"):
        parse_args(["train", "sensors", "--duplicates", "max"])
