"""The lake's default root from the settings, and the committed sample files against their generator."""
import importlib.util

import numpy as np
import pandas as pd
import pytest

from pipelines.lake import Lake


def test_lake_root_defaults_to_settings(monkeypatch, tmp_path):
    monkeypatch.setenv("VAE_ANOMALY_LAKE", str(tmp_path / "elsewhere"))
    assert Lake().url == str(tmp_path / "elsewhere")


def test_sample_files_are_what_the_generator_makes(samples_dir):
    spec = importlib.util.spec_from_file_location("make_samples", samples_dir.parent / "make_samples.py")
    make_samples = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_samples)
    installed = {"numpy": np.__version__, "pandas": pd.__version__}
    if any(not installed[name].startswith(version + ".") for name, version in make_samples.GENERATED_WITH.items()):
        pytest.skip(f"samples were generated with {make_samples.GENERATED_WITH}, not {installed}")
    files = make_samples.build_samples()
    assert sorted(files) == sorted(p.name for p in samples_dir.iterdir() if p.name != "README.md")
    assert all(make_samples._same(samples_dir / name, data) for name, data in files.items())
    assert all(len(data) < 300_000 for data in files.values())
