#!/usr/bin/env bash
# The production topology, run for real on 127.0.0.1 with no Docker: PostgreSQL, an S3 server
# (moto), a Prefect server and an MLflow server on PostgreSQL (artifacts in the bucket), a Dask
# scheduler with two workers, one Prefect process worker per pool (cpu, gpu); the deployments of
# prefect.yaml registered and run (ingest -> train -> score -> retrain, plus a run the server's
# scheduler created from the hourly cron), then checked in each server's own store; an alert rule
# posts to a json:// receiver the smoke runs (one post per batch alert, the crashed run told by the
# server's automation). Faults
# (infra/smoke/faults.py): the MLflow server restarted, a Dask worker killed mid-score, the cpu
# worker killed with its flow run mid-score (the heartbeat automation marks the run Crashed).
#
#   bash infra/smoke.sh            # after `make setup`; needs root and PostgreSQL's server binaries
#
# Exit 0 only when every check passed (1: a check or step failed, 2: cannot run here). The
# Python side (infra/smoke/run.py) records every process it starts by PID and stops them all on
# any exit, also on SIGTERM/SIGINT/SIGHUP; the trap below forwards those signals to it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

"$PY" -m infra.smoke.run "$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null; wait "$child" || true; exit 143' TERM INT HUP
wait "$child"
