"""Benchmarks of vae_core against baselines; run with ``python -m benchmarks.run``."""
