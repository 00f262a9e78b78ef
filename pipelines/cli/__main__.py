"""``python -m pipelines.cli``: the same as the ``vae-anomaly`` console script."""
from pipelines.cli import run

run()
