"""The flows' parameter defaults, in one place: the flow signatures use them and the CLI's help
shows them (importing this module imports nothing else, so ``vae-anomaly --help`` stays quick)."""
from __future__ import annotations

#: The registry aliases (:mod:`pipelines.tracking.registry` sets them).
CHAMPION = "champion"
CHALLENGER = "challenger"

#: Rows per Arrow record batch when a table's batch is scored in chunks.
BATCH_ROWS = 65536
#: PSI of a batch's scores against the calibration scores above which it counts as drifted.
DRIFT_THRESHOLD = 0.25
#: A time series' per-point score mode in the score flow: causal.
POINT_SCORE = "last"
#: The training seed.
SEED = 0
#: The retrain flow: the newest batches a challenger trains on, the share of rows held out to
#: compare it with the champion, and how much worse its held-out -log p may be and still win.
RECENT_BATCHES = 3
HOLDOUT_FRACTION = 0.2
TOLERANCE = 0.0
