"""pipelines.durations: the durations of `maintain --retention 7d --reports-older-than 90d` and
of VAE_ANOMALY_LAKE_RETENTION, with a clear error for anything else."""
from datetime import timedelta

import pytest

from pipelines.durations import format_hours, parse_duration, whole_hours
from pipelines.settings import LAKE_RETENTION_HOURS, Settings


@pytest.mark.parametrize("text, expected", [
    ("90d", timedelta(days=90)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30)),
    ("45s", timedelta(seconds=45)), ("2w", timedelta(days=14)), (" 7D ", timedelta(days=7)), ("0h", timedelta(0)),
])
def test_durations_parse(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "90", "d", "1.5d", "-1d", "7 days", "7y", "1d12h"])
def test_a_bad_duration_names_itself_and_the_form_expected(text):
    with pytest.raises(ValueError, match=rf"reports-older-than {text!r}: expected a whole number and a unit"):
        parse_duration(text, "reports-older-than")


def test_retention_is_whole_hours_and_reads_back():
    assert whole_hours("7d") == 168 and whole_hours("36h") == 36
    with pytest.raises(ValueError, match=r"retention '90m': must be whole hours"):
        whole_hours("90m", "retention")
    assert [format_hours(h) for h in (168, 36, 0.5, 2160.0)] == ["7d", "36h", "0.5h", "90d"]


def test_the_lake_retention_setting_defaults_to_7_days_and_is_checked():
    assert Settings.from_env({}).lake_retention_hours == LAKE_RETENTION_HOURS == 168
    assert Settings.from_env({"VAE_ANOMALY_LAKE_RETENTION": "30d"}).lake_retention_hours == 720
    with pytest.raises(ValueError, match="VAE_ANOMALY_LAKE_RETENTION '1 week'"):
        Settings.from_env({"VAE_ANOMALY_LAKE_RETENTION": "1 week"})
