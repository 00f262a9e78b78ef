"""Generate the committed sample data in ``data/samples/`` (deterministic, fixed seed).

Two datasets, three batches each (batch 1 CSV, batch 2 Parquet, batch 3 JSON lines), with
about 1% injected anomalies whose ground truth is kept out of the data files:

- ``transactions``: a mixed-type table (float, int, bool and categorical string columns,
  a few missing values), keyed by ``txn_id``; labels in ``transactions_labels.csv``.
- ``sensors``: two series (``sensor`` = s1, s2) sampled every 5 minutes with a daily cycle,
  a few missing timestamps (gaps), spikes and a level shift; labels in ``sensors_labels.csv``
  keyed by (``timestamp``, ``sensor``).

``transactions_bad.csv`` is a small fourth batch of ``transactions`` with a few rows that the
lake must quarantine (see ``data/samples/README.md``). Usage::

    python data/make_samples.py            # rewrite data/samples/
    python data/make_samples.py --check    # exit 1 if the committed files differ
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

SEED = 20240601
#: Library versions the committed files were generated with; other numpy/pandas releases may
#: draw or format numbers differently (numpy does not promise identical streams across releases).
GENERATED_WITH = {"numpy": "2.4", "pandas": "3.1"}
ROWS_PER_BATCH = 1900  # keeps the JSON-lines batch under 300 KB
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
FORMATS = ("csv", "parquet", "jsonl")
CATEGORIES = ("grocery", "fuel", "restaurant", "electronics", "travel", "online")
CATEGORY_MEDIAN = {
    "grocery": 45.0, "fuel": 60.0, "restaurant": 35.0, "electronics": 180.0, "travel": 320.0, "online": 70.0
}
CHANNELS = ("pos", "online", "atm")
SENSOR_START = pd.Timestamp("2024-03-01T00:00:00Z")
SENSOR_STEP = pd.Timedelta(minutes=5)
SENSOR_STEPS_PER_BATCH = 1000


# ----------------------------------------------------------------------------- transactions


def _transactions(
    rng: np.random.Generator, first_id: int, n: int, inject: bool = True
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One batch of normal transactions with ~1% injected anomalies (unless ``inject`` is false), and its labels."""
    category = rng.choice(CATEGORIES, n, p=[0.3, 0.15, 0.2, 0.08, 0.07, 0.2])
    median = np.array([CATEGORY_MEDIAN[c] for c in category])
    channel = np.where(category == "online", "online", rng.choice(CHANNELS, n, p=[0.8, 0.05, 0.15]))
    frame = pd.DataFrame(
        {
            "txn_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "amount": np.round(median * rng.lognormal(0.0, 0.45, n), 2),
            "n_items": (rng.poisson(np.where(category == "grocery", 6, 1.5)) + 1).astype(np.int64),
            "category": category,
            "channel": channel,
            "is_foreign": rng.random(n) < 0.04,
            "card_age_days": rng.integers(30, 3650, n).astype(np.int64),
            "hour": np.clip(np.round(rng.normal(14, 4, n)), 0, 23).astype(np.int64),
            "risk_score": np.round(rng.beta(2, 8, n), 3),
        }
    )
    frame["card_age_days"] = frame["card_age_days"].astype("Int64")
    frame.loc[rng.random(n) < 0.015, "risk_score"] = np.nan
    frame.loc[rng.random(n) < 0.005, "card_age_days"] = pd.NA

    kind = np.full(n, "", dtype=object)
    chosen = rng.choice(n, n // 100, replace=False) if inject else []
    for i, row in enumerate(chosen):
        pattern = ("amount_spike", "night_foreign_atm", "items_burst")[i % 3]
        kind[row] = pattern
        if pattern == "amount_spike":
            frame.loc[row, "amount"] = round(frame.loc[row, "amount"] * rng.uniform(25, 60), 2)
        elif pattern == "night_foreign_atm":
            frame.loc[row, ["channel", "is_foreign", "hour"]] = ["atm", True, int(rng.integers(2, 5))]
            frame.loc[row, "amount"] = round(float(rng.uniform(900, 2500)), 2)
            frame.loc[row, "card_age_days"] = int(rng.integers(1, 10))
        else:
            frame.loc[row, ["category", "channel", "n_items"]] = ["electronics", "online", int(rng.integers(40, 90))]
    labels = pd.DataFrame(
        {"txn_id": frame["txn_id"], "is_injected_anomaly": (kind != "").astype(int), "anomaly_kind": kind}
    )
    return frame, labels


def _bad_transactions(first_id: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small batch, as text, with four rows the lake must quarantine and one merely missing value."""
    rng = np.random.default_rng(SEED + 99)
    frame, _ = _transactions(rng, first_id, 20, inject=False)
    text = frame.astype(object).where(frame.notna(), "")
    text["is_foreign"] = frame["is_foreign"].map({True: "true", False: "false"})
    text.loc[3, "amount"] = "abc"  # unparseable number
    text.loc[7, "amount"] = "inf"  # infinite value
    text.loc[11, "is_foreign"] = "maybe"  # not a bool
    text.loc[15, "n_items"] = "2.5"  # not a whole number
    text.loc[18, "risk_score"] = ""  # missing: allowed, the row is accepted
    labels = pd.DataFrame({"txn_id": frame["txn_id"], "is_injected_anomaly": 0, "anomaly_kind": ""})
    return text, labels


# ----------------------------------------------------------------------------- sensors


def _sensors(rng: np.random.Generator, batch: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One batch of two 5-minute series with a daily cycle, gaps and injected anomalies."""
    steps = np.arange(batch * SENSOR_STEPS_PER_BATCH, (batch + 1) * SENSOR_STEPS_PER_BATCH)
    frames, labels = [], []
    for number, sensor in enumerate(("s1", "s2")):
        hours = steps * SENSOR_STEP / pd.Timedelta(hours=1)
        phase = 2 * np.pi * (hours - 15) / 24  # warmest at 15:00
        n = len(steps)
        frame = pd.DataFrame(
            {
                "timestamp": SENSOR_START + steps * SENSOR_STEP,
                "sensor": sensor,
                "temperature": 20 + 2 * number + 4 * np.cos(phase) + rng.normal(0, 0.3, n),
                "humidity": 55 - 8 * np.cos(phase) + rng.normal(0, 1.0, n),
                "vibration": np.abs(rng.normal(0.5 + 0.1 * number, 0.05, n)),
            }
        )
        kind = np.full(n, "", dtype=object)
        for row in rng.choice(np.arange(50, n - 50), 4, replace=False):  # spikes
            column = ("temperature", "humidity", "vibration")[int(rng.integers(0, 3))]
            scale = {"temperature": 12.0, "humidity": 30.0, "vibration": 2.0}[column]
            frame.loc[row, column] += scale * rng.choice((-1, 1)) if column != "vibration" else scale
            kind[row] = "spike"
        if (batch, sensor) == (1, "s2"):  # a three-hour level shift
            start = 600
            frame.loc[start : start + 35, "temperature"] += 6.0
            kind[start : start + 36] = "level_shift"
        if (batch, sensor) == (2, "s1"):  # a vibration burst
            start = 300
            frame.loc[start : start + 11, "vibration"] *= 4.0
            kind[start : start + 12] = "vibration_burst"
        keep = np.ones(n, bool)
        keep[rng.choice(np.flatnonzero(kind == ""), 10, replace=False)] = False  # missing timestamps
        frames.append(frame[keep])
        truth = {"timestamp": frame["timestamp"], "sensor": sensor, "is_injected_anomaly": (kind != "").astype(int)}
        labels.append(pd.DataFrame({**truth, "anomaly_kind": kind})[keep])
    data = pd.concat(frames).sort_values(["timestamp", "sensor"], kind="stable").reset_index(drop=True)
    for column in ("temperature", "humidity", "vibration"):
        data[column] = data[column].round(3)
    label = pd.concat(labels).sort_values(["timestamp", "sensor"], kind="stable").reset_index(drop=True)
    return data, label


# ----------------------------------------------------------------------------- writing


def _iso(stamps: pd.Series) -> pd.Series:
    """UTC timestamps as ISO 8601 text with a Z suffix."""
    return stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _csv_bytes(frame: pd.DataFrame) -> bytes:
    """CSV with lowercase booleans, ISO times and empty fields for missing values."""
    out = frame.copy()
    for name in out.columns:
        if pd.api.types.is_bool_dtype(out[name].dtype):
            out[name] = out[name].map({True: "true", False: "false"})
        elif pd.api.types.is_datetime64_any_dtype(out[name].dtype):
            out[name] = _iso(out[name])
    return out.to_csv(index=False, lineterminator="\n").encode("utf-8")


def _jsonl_bytes(frame: pd.DataFrame) -> bytes:
    """One compact JSON object per line; missing values are null."""
    out = frame.copy()
    for name in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[name].dtype):
            out[name] = _iso(out[name])
    lines = []
    for record in out.astype(object).to_dict("records"):
        clean = {k: (None if pd.isna(v) else v.item() if isinstance(v, np.generic) else v) for k, v in record.items()}
        lines.append(json.dumps(clean, separators=(",", ":")))
    return ("\n".join(lines) + "\n").encode("utf-8")


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    """Parquet (zstd) without pandas metadata."""
    buffer = io.BytesIO()
    zoned = [name for name in frame.columns if isinstance(frame[name].dtype, pd.DatetimeTZDtype)]
    table = pa.Table.from_pandas(frame.drop(columns=zoned), preserve_index=False).replace_schema_metadata(None)
    for name in zoned:  # as UTC timestamps, without pandas' deprecated tz-dropping .values
        utc = pa.array(frame[name].dt.tz_convert(None).dt.as_unit("us").to_numpy(), pa.timestamp("us"))
        table = table.add_column(list(frame.columns).index(name), name, utc.cast(pa.timestamp("us", tz="UTC")))
    pq.write_table(table, buffer, compression="zstd")
    return buffer.getvalue()


WRITERS: dict[str, Callable[[pd.DataFrame], bytes]] = {
    "csv": _csv_bytes, "parquet": _parquet_bytes, "jsonl": _jsonl_bytes
}


def build_samples() -> dict[str, bytes]:
    """All sample files, by file name, as bytes."""
    rng = np.random.default_rng(SEED)
    files: dict[str, bytes] = {}
    labels = []
    for batch, fmt in enumerate(FORMATS):
        frame, label = _transactions(rng, 100_000 + batch * ROWS_PER_BATCH, ROWS_PER_BATCH)
        files[f"transactions_batch{batch + 1}.{fmt}"] = WRITERS[fmt](frame)
        labels.append(label)
    bad, bad_labels = _bad_transactions(100_000 + len(FORMATS) * ROWS_PER_BATCH)
    files["transactions_bad.csv"] = bad.to_csv(index=False, lineterminator="\n").encode("utf-8")
    files["transactions_labels.csv"] = _csv_bytes(pd.concat(labels + [bad_labels]))

    labels = []
    for batch, fmt in enumerate(FORMATS):
        frame, label = _sensors(rng, batch)
        files[f"sensors_batch{batch + 1}.{fmt}"] = WRITERS[fmt](frame)
        labels.append(label)
    files["sensors_labels.csv"] = _csv_bytes(pd.concat(labels))
    return files


def main(argv: list[str] | None = None) -> int:
    """Write (or ``--check``) the sample files; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=SAMPLES_DIR, help="output folder (default: data/samples)")
    parser.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    args = parser.parse_args(argv)
    files = build_samples()
    if args.check:
        stale = [name for name, data in files.items() if not _same(args.out / name, data)]
        for name in stale:
            print(f"differs: {name}", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (args.out / name).write_bytes(data)
        print(f"{name:28s} {len(data) / 1024:7.1f} KiB")
    return 0


def _same(path: Path, data: bytes) -> bool:
    """Whether ``path`` holds ``data`` (Parquet compared by content, not bytes)."""
    if not path.exists():
        return False
    if path.suffix == ".parquet":
        return pq.read_table(path).equals(pq.read_table(io.BytesIO(data)))
    return path.read_bytes() == data


if __name__ == "__main__":
    raise SystemExit(main())
