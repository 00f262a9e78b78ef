"""``python -m pipelines.cli``: the same as the ``vae-anomaly`` console script."""
import sys

from pipelines.cli import main

sys.exit(main())
