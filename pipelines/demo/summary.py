"""The demo's summary: where to look, and the flags against the labels, as Rich renderables.

Values from data (keys, batch ids, top features) print through :func:`pipelines.escaping.terminal`.
"""
from __future__ import annotations

from pipelines.escaping import terminal


def where_to_look(summary: dict) -> list[tuple[str, str]]:
    """(what, command or path) lines for the summary."""
    uri = summary["tracking_uri"]
    mlflow = f"open {uri}" if uri.startswith("http") else f"mlflow ui --backend-store-uri {uri}"
    prefect = (
        f"open {summary['prefect_api_url'].removesuffix('/api')}" if summary.get("prefect_api_url")
        else f"PREFECT_HOME={summary['prefect_home']} prefect server start"
    )
    rows = [("MLflow runs and registry", mlflow), ("Prefect flow runs", prefect)]
    for name, info in summary["datasets"].items():
        rows.append((f"{name} scores (v{info['champion']})", info["scores_path"]))
    rows.append(("quarantined rows", f"{summary['lake'].rstrip('/')}/transactions/quarantine"))
    rows.append(("reports, one per scored batch", f"{summary['lake'].rstrip('/')}/<dataset>/reports/"))
    rows.append(("review the flags in a browser", "vae-anomaly review   (then open http://127.0.0.1:8765)"))
    return rows


def render(summary: dict) -> list:
    """Rich renderables for the demo summary."""
    from rich.table import Table
    from rich.text import Text

    def pct(x: float) -> str:
        return "-" if x != x else f"{x:.0%}"

    out: list = []
    look = Table(title=f"demo finished in {summary['seconds']:.0f} s: where to look", title_justify="left",
                 show_header=False, box=None, padding=(0, 2))
    look.add_column(style="bold")
    look.add_column(overflow="fold")
    for what, where in where_to_look(summary):
        look.add_row(what, terminal(where))
    out.append(look)

    quality = Table(title="flags vs the injected anomalies of data/samples/*_labels.csv (never shown to the models)",
                    title_justify="left")
    for name in ("dataset", "model", "rows", "injected", "flagged", "caught", "precision", "recall", "ROC AUC"):
        quality.add_column(name, justify="left" if name == "dataset" else "right")
    kinds = []
    for name, info in summary["datasets"].items():
        e = info["evaluation"]
        quality.add_row(
            name, f"v{info['champion']}", str(e["rows"]), str(e["injected"]), str(e["flagged"]), str(e["true_positives"]),
            pct(e["precision"]), pct(e["recall"]), "-" if e["roc_auc"] != e["roc_auc"] else f"{e['roc_auc']:.3f}",
        )
        caught = ", ".join(f"{k} {v['flagged']}/{v['injected']}" for k, v in e["recall_by_kind"].items())
        kinds.append(f"  {name}: caught by kind: {caught or '-'}")
    out.append(quality)
    out.append(terminal("\n".join(kinds)))

    loop = Table(title="review loop: verdicts on the history batches' flags, a threshold from them; "
                       "flags on the later batches before and after", title_justify="left")
    for name in ("dataset", "verdicts", "threshold", "precision", "recall"):
        loop.add_column(name, justify="left" if name == "dataset" else "right")
    for name, info in summary["datasets"].items():
        r = info.get("review")
        if r and r.get("version") is None:
            loop.add_row(name, f"{r['verdicts']['anomaly']} real, {r['verdicts']['false_alarm']} false", "too few verdicts: kept", "-", "-")
        elif r:
            b, a = r["before"], r["after"]
            loop.add_row(name, f"{r['verdicts']['anomaly']} real, {r['verdicts']['false_alarm']} false",
                         f"{r['threshold_before']:.4g} -> {r['threshold_after']:.4g}",
                         f"{pct(b['precision'])} -> {pct(a['precision'])}", f"{pct(b['recall'])} -> {pct(a['recall'])}")
    out.append(loop)

    for name, info in summary["datasets"].items():
        retrain = info.get("retrain")
        if retrain:
            verdict = "promoted the challenger" if retrain["promoted"] else "kept the champion"
            out.append(Text.assemble(terminal(f"{name} retraining", style="bold"), terminal(
                f": {verdict} (challenger v{retrain['challenger_version']} {retrain['challenger_nll']:.3f} vs champion "
                f"v{retrain['champion_version']} {retrain['champion_nll']:.3f} nats/row, -log p on the same held-out rows)"
            )))
        top = Table(title=f"top {len(info['top'])} anomalies of {name} (v{info['champion']})", title_justify="left")
        for col in ("key", "batch", "score", "top features", "injected"):
            top.add_column(col, justify="right" if col == "score" else "left", overflow="fold")
        for r in info["top"]:
            top.add_row(*map(terminal, (r["key"], r["batch_id"], f"{r['anomaly_score']:.4g}", r["top_features"], r["injected"])))
        out.append(top)
    return out
