"""Fixtures shared by every test directory.

Keep this file small: fixtures used by one directory belong in that directory's conftest.

The environment lines below run when pytest loads this file, before any test module imports
Prefect (Prefect reads its settings on import): analytics off, and a throw-away
``PREFECT_HOME`` so tests never touch a developer's profile or the project's ``.state``.
Prefect tests request the session-scoped ``prefect_harness`` fixture, which starts one
temporary Prefect API (with a temporary database) for the whole session.
"""
import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
# one torch/OpenMP thread: on a 2-core machine shared with the servers the tests start, two
# threads made small-model training 6-40x slower (benchmarks/README.md); subprocesses inherit it
os.environ.setdefault("OMP_NUM_THREADS", "1")
if "PREFECT_HOME" not in os.environ:
    _prefect_home = tempfile.mkdtemp(prefix="vae-anomaly-test-prefect-")
    atexit.register(shutil.rmtree, _prefect_home, ignore_errors=True)
    os.environ["PREFECT_HOME"] = _prefect_home

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# `make test` hands whole files to two pytest-xdist workers in collection order
# (`--dist loadfile --no-loadscope-reorder`). The longest files go first, so that no worker starts
# a ten-minute file while the other runs out of work (longest first). A worker takes its next file
# while two or fewer of its tests are left, so a one-test file (the smoke, the demo) already holds
# the file after it. A file missing here only runs later, so this list changes the run's length,
# never its result.
LONGEST_FIRST = (  # seconds per file, measured 2026-12-08 in two-worker runs of groups of files at load 3-8
    "integration/test_smoke.py",  # 768 (the smoke alone, at load 5-10)
    "e2e/test_demo.py",  # 481 (alone)
    "integration/test_bad_input_matrix.py",  # 391
    "integration/test_reliability.py",  # 327
    "integration/test_cli.py",  # 236
    "integration/test_flows.py",  # 170
    "integration/test_postgres_topology.py",  # 127 (an earlier full run)
    "integration/test_s3_lake.py",  # 124
    "integration/test_review_loop.py",  # 84
    "integration/test_serve.py",  # 80
    "unit/pipelines/alerts/test_alerts_automation.py",  # 61
    "integration/test_tracking.py",  # 57
    "unit/pipelines/test_automations.py",  # 28
    "unit/vae_core/test_quality.py",  # 27
    "unit/test_house.py",  # 27
)


def pytest_collection_modifyitems(config, items):
    """Put the files of :data:`LONGEST_FIRST` first, in its order (a stable sort)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def key(item):
        relative = Path(str(item.fspath)).relative_to(PROJECT_ROOT / "tests").as_posix()
        return rank.get(relative, len(rank))

    items.sort(key=key)


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    """The committed sample data (``data/samples``)."""
    return PROJECT_ROOT / "data" / "samples"


@pytest.fixture
def lake(tmp_path):
    """An empty :class:`pipelines.lake.Lake` in a temporary folder."""
    from pipelines.lake import Lake

    return Lake(tmp_path / "lake")


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API and database for the whole session (started on first use)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
