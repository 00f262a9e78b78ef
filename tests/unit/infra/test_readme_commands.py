"""The README's "Running on servers" commands as the smoke reads them (infra/smoke/checks.py),
and the rule that matches them against what the smoke ran; the smoke itself applies the rule to
its own commands (tests/integration/test_smoke.py)."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from infra.smoke.checks import readme_commands, shows  # noqa: E402


def test_the_readme_section_shows_the_topologys_commands():
    commands = readme_commands((ROOT / "README.md").read_text())
    programs = {tuple(c[:3]) for c in commands}
    assert ("prefect", "server", "start") in programs and ("mlflow", "server", "--backend-store-uri") in programs
    assert ["prefect", "worker", "start", "--pool", "cpu", "--type", "process"] in commands
    assert ["prefect", "worker", "start", "--pool", "gpu", "--type", "process"] in commands
    assert ["vae-anomaly", "automations"] in commands  # the zombie-run automation, before any run
    runs = [c[3] for c in commands if c[:3] == ["prefect", "deployment", "run"]]
    assert runs == ["train/on-demand-training", "score/scheduled-scoring", "retrain/nightly-retraining"]
    assert all(not c[0].isupper() and "=" not in c[0] for c in commands)  # assignments and exports are not commands


def test_a_shown_command_matches_the_same_command_with_values_and_more_options():
    shown = ["dask", "worker", "tcp://<scheduler-host>:<port>", "--nthreads", "1"]
    assert shows(shown, ["dask", "worker", "tcp://127.0.0.1:4242", "--name", "w-1", "--nthreads", "1", "--no-dashboard"])
    assert not shows(shown, ["dask", "worker", "tcp://127.0.0.1:4242", "--nthreads", "2"])
    assert not shows(shown, ["dask", "scheduler", "tcp://127.0.0.1:4242", "--nthreads", "1"])
    assert not shows(["prefect", "deploy", "--all"], ["prefect", "--no-prompt", "deploy"])
    assert shows(["prefect", "--no-prompt", "deploy", "--all"], ["prefect", "--no-prompt", "deploy", "--all", "--prefect-file", "/tmp/p.yaml"])
