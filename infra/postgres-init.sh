#!/bin/sh
# Runs once, when the PostgreSQL volume is first initialised: the image creates $POSTGRES_DB
# (Prefect's database); this adds MLflow's.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -c "CREATE DATABASE \"$MLFLOW_DB\" OWNER \"$POSTGRES_USER\""
