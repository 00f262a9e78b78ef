"""Fixtures of the lake tests: a clean and a dirty CSV of one schema."""
from pathlib import Path

import pytest

from lake_helpers import CLEAN_CSV, write


@pytest.fixture
def clean_csv(tmp_path) -> Path:
    """20 clean rows: int, float, bool, string and an ISO time column."""
    return write(tmp_path / "clean.csv", CLEAN_CSV)


@pytest.fixture
def dirty_csv(tmp_path) -> Path:
    """6 rows of the clean schema, 4 of them bad in different ways."""
    return write(
        tmp_path / "dirty.csv",
        """
        id,amount,flag,kind,ts
        100,1.0,true,a,2024-02-01T00:00:00Z
        101,abc,false,b,2024-02-01T01:00:00Z
        102,inf,true,c,2024-02-01T02:00:00Z
        103,2.0,maybe,d,2024-02-01T03:00:00Z
        104,3.0,false,e,
        105,,true,,2024-02-01T05:00:00
        """,
    )
