"""How the console script ends: as usual, or, after a read through delta-rs's Python handler,
with its atexit handlers run, its output flushed and no interpreter finalization (issue 8)."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
SCRIPT = """
import atexit, sys
from pipelines.cli.lifecycle import finish
atexit.register(lambda: print("atexit ran"))
if {handler}:
    from pipelines.lake import delta
    delta._HANDLER_READS.add("gs://bucket/table")  # as arrow_dataset records a read through the handler
class Noisy:  # finalization would run this destructor; os._exit skips it
    def __del__(self):
        print("finalized")
keep = Noisy()
print("result", end="")  # no newline: only a flush writes it to a pipe
finish(3)
"""


@pytest.mark.parametrize("handler", [False, True])
def test_finish_exits_with_the_code_and_runs_atexit(handler):
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(handler=handler)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "resultatexit ran"
    assert ("finalized" in lines) is not handler  # the interpreter's finalization ran only without handler reads


def test_the_console_script_ends_through_finish():
    script = Path(sys.executable).with_name("vae-anomaly").read_text()
    assert "from pipelines.cli import run" in script and "run()" in script
    assert (ROOT / "pipelines" / "cli" / "__main__.py").read_text().rstrip().endswith("run()")
