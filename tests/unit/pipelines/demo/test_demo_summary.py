"""pipelines.demo.summary: where to look after the demo, and its tables as the terminal prints them."""
import math

from rich.console import Console

from pipelines.demo.summary import render, where_to_look


def summary(**over):
    evaluation = {"rows": 100, "injected": 4, "flagged": 3, "true_positives": 2, "precision": 2 / 3, "recall": 0.5,
                  "roc_auc": 0.91234, "recall_by_kind": {"spike": {"injected": 4, "flagged": 2}}}  # fmt: skip
    top = [{"key": "[bold]42[/bold]", "batch_id": "b-1", "anomaly_score": 12.3456, "top_features": "amount", "injected": "spike"}]
    base = {
        "seconds": 61.4, "tracking_uri": "sqlite:////h/mlflow.db", "prefect_api_url": None, "prefect_home": "/h/prefect",
        "lake": "/data/lake/",
        "datasets": {"transactions": {"champion": "2", "scores_path": "/data/lake/transactions/scores",
                                      "evaluation": evaluation, "top": top}},
    }  # fmt: skip
    return {**base, **over}


def test_where_to_look_opens_servers_and_starts_local_uis():
    rows = dict(where_to_look(summary()))
    assert rows["MLflow runs and registry"] == "mlflow ui --backend-store-uri sqlite:////h/mlflow.db"
    assert rows["Prefect flow runs"] == "PREFECT_HOME=/h/prefect prefect server start"
    assert rows["transactions scores (v2)"] == "/data/lake/transactions/scores"
    assert rows["quarantined rows"] == "/data/lake/transactions/quarantine"  # no double slash
    served = dict(where_to_look(summary(tracking_uri="http://127.0.0.1:5000", prefect_api_url="http://127.0.0.1:4200/api")))
    assert served["MLflow runs and registry"] == "open http://127.0.0.1:5000"
    assert served["Prefect flow runs"] == "open http://127.0.0.1:4200"


def printed(s: dict) -> str:
    console = Console(width=200, record=True, color_system=None)
    for renderable in render(s):
        console.print(renderable)
    return console.export_text()


def cells(text: str, first: str) -> list[str]:
    """The cells of the first table row whose first cell is ``first``."""
    for line in text.splitlines():
        parts = [p.strip() for p in line.split("│")[1:-1]]
        if parts and parts[0] == first:
            return parts
    raise AssertionError(f"no row {first!r} in:\n{text}")


def test_the_tables_show_percentages_the_auc_and_data_as_literal_text():
    text = printed(summary())
    assert "demo finished in 61 s" in text
    # dataset, model, rows, injected, flagged, caught, precision, recall, ROC AUC
    assert cells(text, "transactions") == ["transactions", "v2", "100", "4", "3", "2", "67%", "50%", "0.912"]
    assert "caught by kind: spike 2/4" in text
    assert "[bold]42[/bold]" in text and "12.35" in text  # markup in data printed as it is


def test_undefined_figures_print_as_a_dash_and_the_review_loop_shows_its_change():
    s = summary()
    info = s["datasets"]["transactions"]
    info["evaluation"] = {**info["evaluation"], "precision": math.nan, "roc_auc": math.nan, "recall_by_kind": {}}
    info["review"] = {"version": "3", "verdicts": {"anomaly": 5, "false_alarm": 2}, "threshold_before": 1.23456,
                      "threshold_after": 2.5, "before": {"precision": 0.5, "recall": 1.0},
                      "after": {"precision": 0.75, "recall": math.nan}}  # fmt: skip
    info["retrain"] = {"promoted": False, "challenger_version": "3", "challenger_nll": 4.0, "champion_version": "2",
                       "champion_nll": 3.5}  # fmt: skip
    text = printed(s)
    assert cells(text, "transactions")[-3:] == ["-", "50%", "-"]  # precision, recall, ROC AUC
    assert "caught by kind: -" in text
    review = [row for row in (line.split("│") for line in text.splitlines()) if "5 real, 2 false" in "".join(row)]
    assert [c.strip() for c in review[0][1:-1]] == ["transactions", "5 real, 2 false", "1.235 -> 2.5", "50% -> 75%", "100% -> -"]
    assert "kept the champion (challenger v3 4.000 vs champion v2 3.500 nats/row" in text
