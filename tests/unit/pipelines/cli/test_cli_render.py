"""pipelines.cli.render: what `score` and the other commands print, with values from data."""
import io
import json

import pytest
from rich.console import Console

from pipelines.cli.render import fmt, jsonable, render_ingest, render_retrain, render_score

HOSTILE_FEATURES = "category='[/]' (60%), channel='[link=https://evil.example]x[/link]' (30%)"


def score_result(top_features: str = HOSTILE_FEATURES, batch_id: str = "b-[bold]1") -> dict:
    return {
        "dataset": "tx", "model_name": "tx[/]", "model_version": "1",
        "scored": [{"batch_id": batch_id, "rows": 1000, "anomalies": 10, "psi": 0.5720000000000001}],
        "rows": 1000, "anomalies": 10, "skipped": [], "drift": True, "max_psi": 0.5720000000000001,
        "top": [{"batch_id": batch_id, "_source_row": 7, "anomaly_score": 12.345678, "p_value": 0.0012345,
                 "top_features": top_features}],
    }


def printed(renderables: list, terminal: bool) -> str:
    console = Console(file=io.StringIO(), width=200, force_terminal=terminal, color_system="truecolor" if terminal else None,
                      highlight=False)
    for item in renderables:
        console.print(item)
    return console.file.getvalue()


def test_score_prints_markup_in_cells_literally():
    out = printed(render_score(score_result()), terminal=False)
    assert "category='[/]' (60%)" in out and "channel='[link=https://evil.example]x[/link]'" in out
    assert "b-[bold]1" in out and "score tx with tx[/] v1" in out


def test_score_on_a_terminal_opens_no_hyperlink():
    out = printed(render_score(score_result()), terminal=True)  # MarkupError before the fix
    assert "\x1b]8;" not in out and "[link=https://evil.example]" in out


def test_floats_print_rounded():
    out = printed(render_score(score_result()), terminal=False)
    assert "0.572" in out and "0.5720000000000001" not in out and "12.35" in out
    assert fmt(0.5720000000000001) == "0.572" and fmt([0.1 + 0.2, "a"]) == "0.3, a" and fmt(float("nan")) == "-"


def test_json_rounds_floats_to_6_digits_and_keeps_keys():
    result = score_result()
    out = jsonable(result)
    assert out["max_psi"] == 0.572 and out["top"][0]["anomaly_score"] == 12.3457
    assert json.loads(json.dumps(out)).keys() == result.keys() and out["top"][0].keys() == result["top"][0].keys()
    assert jsonable({"a": float("inf"), "b": 3, "c": True}) == {"a": None, "b": 3, "c": True}


def test_json_of_numpy_scalars():
    np = pytest.importorskip("numpy")
    assert jsonable({"x": np.float32(0.1), "n": np.int64(3)}) == {"x": 0.1, "n": 3}


def test_ingest_prints_a_hostile_file_and_column_name_literally():
    report = {"dataset": "tx", "batch_id": "b-1", "source": "/data/[red]x.csv", "rows_read": 3, "rows_accepted": 2,
              "rows_quarantined": 1, "quarantined_by_column": {"[/]col": 1}, "ignored_columns": [":warning:"], "skipped": False}
    out = printed(render_ingest(report), terminal=False)
    assert "/data/[red]x.csv" in out and "[/]col: 1" in out and ":warning:" in out


def test_the_demo_summary_prints_values_from_data_literally():
    from pipelines.cli.render import render_demo

    evaluation = {"rows": 100, "injected": 2, "flagged": 3, "true_positives": 2, "precision": 2 / 3, "recall": 1.0,
                  "roc_auc": 0.987654, "recall_by_kind": {"[/]spike": {"injected": 2, "flagged": 2}}}
    summary = {
        "seconds": 12.3, "lake": "/lake", "tracking_uri": "sqlite:///m.db", "prefect_api_url": None, "prefect_home": "/p",
        "datasets": {"tx": {
            "champion": "2", "scores_path": "/lake/tx/scores/[link=x]", "evaluation": evaluation,
            "retrain": {"promoted": True, "challenger_version": "2", "challenger_nll": 1.23456, "champion_version": "1",
                        "champion_nll": 1.5},
            "top": [{"key": "[/]", "batch_id": "b-1", "anomaly_score": 9.87654, "top_features": HOSTILE_FEATURES,
                     "injected": "[bold]spike"}],
        }},
    }
    out = printed(render_demo(summary), terminal=True)
    for text in ("[/]spike 2/2", "/lake/tx/scores/[link=x]", "[bold]spike", "category='[/]' (60%)", "9.877", "0.988"):
        assert text in out
    assert "\x1b]8;" not in out


def test_retrain_prints_the_reviewed_comparison_when_there_is_one():
    result = {"dataset": "tx", "promoted": False, "champion_version": "2", "challenger_version": "3",
              "champion_nll": 3.2, "challenger_nll": 3.1, "rule": "kept the champion: worse on reviewed items",
              "reviewed_comparison": {"reviewed_alerts_k": 12, "reviewed_compared_items": 40,
                                      "reviewed_precision_at_k_challenger": 0.5, "reviewed_precision_at_k_champion": 0.75}}
    out = printed(render_retrain(result), terminal=False)
    assert "kept the champion" in out and "precision at the champion's 12 alerts of 40: challenger 50%, champion 75%" in out
    assert "alerts of" not in printed(render_retrain({**result, "reviewed_comparison": None}), terminal=False)


def test_a_time_series_score_prints_its_events():
    result = score_result()
    result["scored"][0].update(events=2, continued=1)
    result["events"] = 2
    result["top"][0].update(event_series="s[/]2", event_start="2024-03-01T01:00:00+00:00",
                            event_end="2024-03-01T03:55:00+00:00", event_points=36)
    out = printed(render_score(result), terminal=False)
    assert "10 anomalies in 2 events" in out and "events" in out.splitlines()[2] and "2 (+1 continued)" in out
    assert "s[/]2 2024-03-01T01:00:00+00:00 – 2024-03-01T03:55:00+00:00 (36 points)" in out.replace("\n", "")
    table = printed(render_score(score_result()), terminal=False)  # a table: no events column
    assert "events" not in table


def test_maintain_prints_each_table_and_the_reports_pruned():
    from pipelines.cli.render import render_maintain
    from pipelines.lake.maintenance import MaintenanceReport, TableMaintenance

    done = MaintenanceReport("tx", 168, [TableMaintenance("batches", 9, 12, 10, 1, 51_000, 5_400, 10, 1, 10, 12, 14, 11,
                                                          ["vacuum: lost [bold]"])],
                             reports_older_than_hours=2160.0, reports_pruned=["m-v1/b1", "m-v1/b2"], reports_kept_reviewed=1)
    out = " ".join(printed(render_maintain(jsonable({"datasets": [done.to_dict()]})), terminal=False).split())
    assert "maintain tx: retention 7d" in out
    assert "batches │ 9 -> 12 │ 10 -> 1 │ 0.051 -> 0.0054 │ 11 │ 10 │ 12 │ vacuum: lost [bold]" in out
    assert "reports pruned 2 older than 90d (1 kept for their verdicts)" in out
    assert "no datasets in the lake" in printed(render_maintain({"datasets": []}), terminal=False)
