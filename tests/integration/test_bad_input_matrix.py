"""Issue 8's bad-input matrix: each bad input or fault against the real ``vae-anomaly`` script.

One parametrized table, :data:`CASES`. Each case writes its small input files in ``tmp_path``,
runs zero or more setup commands (each must exit 0), then the command under test, and checks its
exit code and either the one-line ``error: ...`` on stderr or, for an input accepted with a
quarantine, the counts of ``--json`` (rows read = accepted + quarantined) and the quarantine's
reasons. A failing command must commit nothing.

To keep the file short to run, every case shares one lake (dataset ``t``: one committed batch of
columns ``a`` float, ``b`` int, ``c`` string, the schema the drift cases are checked against) and
one Prefect API (the session's ``prefect_harness``, passed to the CLI as ``PREFECT_API_URL``, so
no command starts its own temporary API). A case that commits writes a batch of its own content,
or a dataset of its own. Each case has its own empty MLflow store; only the two cases that need a
model (markup in a score table; duplicate timestamps, reported by ``train``) train one.
"""
from __future__ import annotations

import contextlib
import http.server
import json
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional

import pytest

from pipelines.cli import EXIT_INPUT, EXIT_MODEL, EXIT_OK
from pipelines.lake import Lake
from server_processes import free_port
from test_cli import SCRIPT, assert_one_error_line, cli_env, vae_anomaly  # noqa: F401 (cli_env is a fixture)

pytestmark = pytest.mark.slow

HEADER = "a,b,c\n"
GOOD_ROWS = "".join(f"{i * 1.5},{i % 7},{'xy'[i % 2]}\n" for i in range(40))


def _csv(text: str) -> Callable[[], bytes]:
    return lambda: text.encode()


def _markup_rows() -> bytes:
    values = ["[/]", "[link=http://x]y[/link]", "x"]
    return (HEADER + "".join(f"{i},{i},{values[i % 3]}\n" for i in range(12))).encode()


def _duplicate_times() -> bytes:
    """Two series a minute apart; series s1 has a second row (+55) at 00:05."""
    rows = [f"2026-01-01T00:{i:02d}:00,{s},{i * 0.1}" for i in range(30) for s in ("s1", "s2")]
    rows.append("2026-01-01T00:05:00,s1,55.0")
    return ("ts,series,v\n" + "\n".join(rows) + "\n").encode()


@dataclass
class Case:
    """One row of the matrix; ``{tmp}`` in an argument is the test's ``tmp_path``."""

    args: list[str]
    code: int
    files: dict[str, Callable[[], bytes]] = field(default_factory=dict)
    setup: list[list[str]] = field(default_factory=list)
    error: Optional[str] = None  # regex the one stderr line must match (re.search)
    counts: Optional[tuple[int, int, int]] = None  # --json rows read, accepted, quarantined
    reasons: list[str] = field(default_factory=list)  # regexes, one per quarantined row, in order
    stdout: list[str] = field(default_factory=list)  # literal texts stdout must contain (any one)
    tracking: Optional[str] = None  # "closed": a closed port on 127.0.0.1; "503": /health 200, the rest 503
    max_seconds: Optional[float] = None


CASES = {
    "missing-file": Case(
        ["ingest", "t", "{tmp}/nope.csv"], EXIT_INPUT, error=r"^error: no such file: .*/nope\.csv$"),
    "empty-file": Case(
        ["ingest", "t", "{tmp}/empty.csv"], EXIT_INPUT, files={"empty.csv": _csv("")},
        error=r"empty\.csv': the file is empty$"),
    "header-only-csv": Case(
        ["ingest", "t", "{tmp}/header.csv"], EXIT_INPUT, files={"header.csv": _csv(HEADER)},
        error=r"the file has no rows \(a header only\?\); nothing to ingest"),
    "corrupt-parquet": Case(
        ["ingest", "t", "{tmp}/bad.parquet"], EXIT_INPUT, files={"bad.parquet": _csv("PAR1garbagegarbage")},
        error=r"cannot parse '.*bad\.parquet' as parquet: .*magic bytes not found"),
    "broken-json-lines": Case(
        ["ingest", "t", "{tmp}/broken.jsonl", "--json"], EXIT_OK,
        files={"broken.jsonl": _csv('{"a": 1.0, "b": 1, "c": "x"}\n{"a": 2.0, "b":\n')},
        counts=(2, 1, 1), reasons=[r"^row 1: invalid JSON \("]),
    "retyped-column": Case(
        ["ingest", "t", "{tmp}/retyped.csv"], EXIT_INPUT,
        files={"retyped.csv": _csv(HEADER + "".join(f"{i},lots,x\n" for i in range(10)))},
        error=r"column 'b' is fixed as int but 10 of 10 values cannot be cast .*was the column retyped\?"),
    "missing-column": Case(
        ["ingest", "t", "{tmp}/missing.csv"], EXIT_INPUT,
        files={"missing.csv": _csv("a,c\n" + "".join(f"{i},x\n" for i in range(10)))},
        error=r"missing column\(s\) \['b'\] of the dataset's schema"),
    "inf-values": Case(
        ["ingest", "t", "{tmp}/inf.csv", "--json"], EXIT_OK,
        files={"inf.csv": _csv(HEADER + "".join(f"{'inf' if i < 2 else i},{i},x\n" for i in range(10)))},
        counts=(10, 8, 2), reasons=[r"^row 0, column 'a': infinite value", r"^row 1, column 'a': infinite value"]),
    "ragged-csv-rows": Case(
        ["ingest", "t", "{tmp}/ragged.csv", "--json"], EXIT_OK,
        files={"ragged.csv": _csv(HEADER + "1.0,1,x\n2.0,2\n3.0,3,x,extra\n4.0,4,y\n5.0,5,x\n")},
        counts=(5, 3, 2), reasons=[r"^row 1: expected 3 fields, got 2: '2\.0,2'$", r"^row 2: expected 3 fields, got 4: '3\.0,3,x,extra'$"]),
    "unsafe-dataset-name-ingest": Case(
        ["ingest", "../../etc", "{tmp}/good.csv"], EXIT_INPUT, files={"good.csv": _csv(HEADER + GOOD_ROWS)},
        error=r"invalid dataset name '\.\./\.\./etc'"),
    "unsafe-dataset-name-score": Case(
        ["score", "../../etc"], EXIT_INPUT, error=r"invalid dataset name '\.\./\.\./etc'"),
    "unsafe-batch-id": Case(
        ["ingest", "t", "{tmp}/other.csv", "--batch-id", "../x"], EXIT_INPUT,
        files={"other.csv": _csv(HEADER + "9.5,9,x\n")}, error=r"^error: invalid batch id '\.\./x'"),
    "markup-values-printed-literally": Case(
        ["score", "mk"], EXIT_OK, files={"markup.csv": _markup_rows},
        setup=[["ingest", "mk", "{tmp}/markup.csv"], ["train", "mk", "--param", "max_epochs=2"]],
        stdout=["c='[/]'", "c='[link=http://x]y[/link]'"]),
    # a category the model never saw: scored (exit 0), flagged, and named as the row's top feature
    "unseen-category": Case(
        ["score", "uc", "--json"], EXIT_OK,
        files={"seen.csv": _csv(HEADER + "".join(f"{i % 5 * 0.5},{i % 3},{'xy'[i % 2]}\n" for i in range(200))),
               "unseen.csv": _csv(HEADER + "1.0,1,x\n0.5,2,never-seen\n1.5,0,y\n")},
        setup=[["ingest", "uc", "{tmp}/seen.csv"], ["train", "uc", "--param", "max_epochs=5"], ["ingest", "uc", "{tmp}/unseen.csv"]],
        stdout=["c='never-seen'"]),
    # ingest does not know the series column; `train` is the cheapest step that reports it
    "duplicate-timestamps-of-a-series": Case(
        ["train", "ts", "--series-column", "series", "--param", "max_epochs=2"], EXIT_INPUT,
        files={"dup.csv": _duplicate_times}, setup=[["ingest", "ts", "{tmp}/dup.csv", "--time-column", "ts"]],
        error=r"series 's1': rows \d+ and \d+ have the same time '2026-01-01 00:05:00\+00:00' in column 'ts'"),
    "score-without-batches": Case(
        ["score", "nothing-here"], EXIT_INPUT,
        error=r"dataset 'nothing-here' has no committed batches .*run `vae-anomaly ingest` first"),
    "score-model-name-typo": Case(
        ["score", "t", "--model-name", "typo"], EXIT_MODEL,
        error=r"no registered model 'typo' \(looked for its 'champion' version\)"),
    "unreachable-tracking-server": Case(
        ["score", "t"], EXIT_MODEL, tracking="closed", max_seconds=60,
        error=r"cannot reach the MLflow tracking server at http://127\.0\.0\.1:\d+ .*Connection refused"),
    "tracking-server-answering-503": Case(
        ["score", "t"], EXIT_MODEL, tracking="503", max_seconds=60,
        error=r"cannot read alias 'champion' of model 't': .*too many 503 error responses"),
    "retrain-model-name-typo": Case(
        ["retrain", "t", "--model-name", "typo"], EXIT_MODEL, error=r"^error: no registered model 'typo'; run `vae-anomaly train` first$"),
    # refused by the train flow's first step, before any epoch; exit 3 (a registry name), not 2
    "train-unsafe-model-name": Case(
        ["train", "t", "--model-name", "../evil/x", "--param", "max_epochs=1"], EXIT_MODEL,
        error=r"^error: invalid model name '\.\./evil/x'"),
}


class _Answers503(http.server.BaseHTTPRequestHandler):
    """A tracking server that is up (``/health`` answers 200) but fails every API call (503)."""

    def _answer(self) -> None:
        self.send_response(200 if self.path.startswith("/health") else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = do_PATCH = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def _tracking_uri(kind: Optional[str]) -> Iterator[Optional[str]]:
    if kind is None:
        yield None
    elif kind == "closed":
        yield f"http://127.0.0.1:{free_port()}"  # free a moment ago: nothing listens there
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers503)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}"
        finally:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def shared(prefect_harness, tmp_path_factory) -> dict:
    """One lake with dataset ``t`` (one committed batch) and the session's Prefect API URL."""
    from prefect.settings import PREFECT_API_URL

    folder = tmp_path_factory.mktemp("bad-input-matrix")
    source = folder / "good.csv"
    source.write_text(HEADER + GOOD_ROWS)
    Lake(folder / "lake").ingest("t", source)
    return {"lake": str(folder / "lake"), "prefect_api_url": PREFECT_API_URL.value()}


def _batch_ids(lake: Lake) -> dict[str, list[str]]:
    """The committed batches of each dataset the cases write to (none yet: an empty list)."""
    return {name: [b.batch_id for b in lake.list_batches(name)] for name in ("t", "mk", "ts", "uc")}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input(case: Case, shared, cli_env, tmp_path):
    env = dict(cli_env, VAE_ANOMALY_LAKE=shared["lake"], PREFECT_API_URL=shared["prefect_api_url"])
    for name, content in case.files.items():
        (tmp_path / name).write_bytes(content())

    def command(args: list[str]) -> list[str]:
        return [a.replace("{tmp}", str(tmp_path)) for a in args]

    for step in case.setup:
        done = vae_anomaly(env, *command(step))
        assert done.returncode == EXIT_OK, (step, done.stderr)
    lake = Lake(shared["lake"])
    before = _batch_ids(lake)

    with _tracking_uri(case.tracking) as uri:
        if uri is not None:
            env["MLFLOW_TRACKING_URI"] = uri
        t0 = time.monotonic()
        result = vae_anomaly(env, *command(case.args))
        seconds = time.monotonic() - t0

    assert result.returncode == case.code, (result.returncode, result.stderr)
    if case.max_seconds is not None:
        assert seconds < case.max_seconds, f"took {seconds:.1f} s"
    if case.error is not None:
        line = assert_one_error_line(result)
        assert re.search(case.error, line), line
        assert _batch_ids(lake) == before  # a refused input commits nothing
    if case.counts is not None:
        summary = json.loads(result.stdout)
        read, accepted, quarantined = case.counts
        assert (summary["rows_read"], summary["rows_accepted"], summary["rows_quarantined"]) == case.counts
        assert read == accepted + quarantined
        assert len(lake.read(summary["dataset"], batch_ids=[summary["batch_id"]])) == accepted
        quarantine = lake.read_quarantine(summary["dataset"], batch_ids=[summary["batch_id"]])
        reasons = quarantine.sort_values("_source_row")["_reason"].tolist()
        assert len(reasons) == quarantined == len(case.reasons), reasons
        for pattern, reason in zip(case.reasons, reasons):
            assert re.search(pattern, reason), reason
    if case.stdout:
        assert any(text in result.stdout for text in case.stdout), result.stdout
        assert "\x1b" not in result.stdout  # no escape sequence: no colour, no OSC 8 hyperlink
