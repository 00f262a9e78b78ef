"""Helpers shared by the lake tests: the constants and files of the tests' small datasets, and the crash seam
(a module of its own, not ``conftest``: fixtures live there)."""
import textwrap
from pathlib import Path

import pipelines.lake.storage as lake_storage

TXN = "transactions"
SAMPLE_ROWS = 1900  # rows per transactions sample batch
SAMPLE_BATCHES = ((1, "csv"), (2, "parquet"), (3, "jsonl"))
CLEAN_SCHEMA = {"id": "int", "amount": "float", "flag": "bool", "kind": "string", "ts": "datetime"}
CLEAN_CSV = "id,amount,flag,kind,ts\n" + "".join(
    f"{i},{i * 1.5},{'true' if i % 2 else 'false'},k{i % 3},2024-01-01T{i:02d}:00:00Z\n" for i in range(20)
)


def write(path: Path, text: str) -> Path:
    """Write a small text source file."""
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def tmp_files(root: Path) -> list[Path]:
    """Temporary files a writer left anywhere under ``root``."""
    return sorted(root.rglob(".tmp-*"))


class Crash(Exception):
    """Stands for the process dying at a commit stage."""


def crash_at(monkeypatch, stage: str) -> list[str]:
    """Make the commit raise at ``stage``; returns the stages seen."""
    seen: list[str] = []

    def crash_point(at: str) -> None:
        seen.append(at)
        if at == stage:
            raise Crash(at)

    monkeypatch.setattr(lake_storage, "crash_point", crash_point)  # the one seam every commit step calls
    return seen
