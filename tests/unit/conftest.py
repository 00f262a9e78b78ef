"""Small, fast fixtures shared by the unit tests (vae_core and the pure pipelines code; helpers in vae_fixtures.py)."""
import pandas as pd
import pytest

from vae_fixtures import FAST, mixed_frame


@pytest.fixture(scope="session")
def frame() -> pd.DataFrame:
    return mixed_frame()


@pytest.fixture(scope="session")
def fitted(frame):
    from vae_core import VAEDetector

    return VAEDetector(seed=0, **FAST).fit(frame)
