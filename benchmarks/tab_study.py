"""Prototype score variants of one fitted ``VAEDetector``, on the league's splits (issue 27).

``python -m benchmarks.tab_study --datasets pima,vowels --seeds 0 --train-cap 2000 [--out-name N]``

Each (set, seed) fits ``VAEDetector(seed=seed)`` with its defaults on the same split as
``benchmarks.run`` and scores the test part with variants computed from that one fit, none of
which uses labels:

- ``ours``: the default ``anomaly_score``;
- ``knn_latent``: mean Euclidean distance of a row's posterior mean to its ``k`` nearest posterior
  means of the detector's own training rows (the local term kNN wins with, in the latent space);
- ``ours+knn_latent``: the sum of the two, each as a robust z-score (median / IQR of the
  detector's held-out validation rows, the rows it calibrates its threshold on).

Rows are scored alone against fixed training latents, so a variant stays deterministic for a seed
and independent of which rows are scored together. This is a measurement outside ``vae_core``;
nothing here changes the detector. Writes ``results/OUT.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from . import data, metrics, report
from .run import RESULTS_DIR, _jsonable, write_atomic

__all__ = ["latent_means", "knn_distance", "robust_z", "variants", "main"]

K = 5


def latent_means(det, frame) -> np.ndarray:
    """Posterior means mu(x) of ``frame``'s rows under a fitted ``VAEDetector``, (n, latent_dim)."""
    import torch

    from vae_core.device import DeviceData

    enc = det.preprocessor_.transform(frame)
    model = det.engine_.model.eval()
    out = []
    with torch.inference_mode():
        for b in DeviceData(enc, det.engine_.device, resident_bytes=0).slices(4096):
            out.append(model.encode(b)[0].float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def knn_distance(reference: np.ndarray, query: np.ndarray, k: int = K) -> np.ndarray:
    """Mean distance of each query row to its ``k`` nearest reference rows, (n_query,)."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=min(k, len(reference))).fit(reference)
    return nn.kneighbors(query)[0].mean(axis=1)


def robust_z(x: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``(x - median(ref)) / IQR(ref)`` (IQR floored at 1e-12)."""
    q1, med, q3 = np.percentile(ref, [25, 50, 75])
    return (x - med) / max(q3 - q1, 1e-12)


def variants(X_train, X_test, seed: int) -> tuple[dict[str, np.ndarray], float]:
    """The score variants of one fit on ``X_train`` for ``X_test``; returns (scores, fit seconds)."""
    from vae_core import VAEDetector
    from vae_core.detector import split_indices

    t = time.perf_counter()
    det = VAEDetector(seed=seed).fit(X_train)
    fit_s = time.perf_counter() - t
    tr_idx, val_idx = split_indices(len(X_train), det.config_.validation_fraction, det.config_.seed)
    z_tr = latent_means(det, X_train.iloc[tr_idx])
    val, test = X_train.iloc[val_idx], X_test
    s_val, s_test = (det.score(f)["anomaly_score"].to_numpy() for f in (val, test))
    k_val, k_test = (knn_distance(z_tr, latent_means(det, f)) for f in (val, test))
    return {"ours": s_test, "knn_latent": k_test,
            "ours+knn_latent": robust_z(s_test, s_val) + robust_z(k_test, k_val)}, fit_s


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.tab_study", description=__doc__.split("\n")[0])
    p.add_argument("--datasets", required=True)
    p.add_argument("--seeds", default="0")
    p.add_argument("--train-cap", type=int, default=2000)
    p.add_argument("--out-name", default="tab_study")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    records = []
    for name in a.datasets.split(","):
        X, y = data.load_tabular(name)
        for seed in (int(s) for s in a.seeds.split(",")):
            sp = data.split_tabular(X, y, seed, train_cap=a.train_cap or None)
            scores, fit_s = variants(sp.X_train, sp.X_test, seed)
            for key, s in scores.items():
                records.append({"dataset": name, "seed": seed, "key": key, "fit_s": fit_s,
                                "auroc": metrics.auroc(sp.y_test, s), "auprc": metrics.auprc(sp.y_test, s)})
            print(f"{name} seed {seed} fit {fit_s:.1f}s " + " ".join(
                f"{r['key']} {r['auroc']:.3f}/{r['auprc']:.3f}" for r in records[-len(scores):]),
                file=sys.stderr, flush=True)
    parts = []
    for m in ("auroc", "auprc"):
        datasets, keys, table = report.tabular_summary(records, m)
        rows = [[d] + [table[d][k] for k in keys] for d in datasets] + [["**mean**"] + [table["mean"][k] for k in keys]]
        parts += [f"### {m.upper()}, mean over seeds {a.seeds}", "", report.md_table(["dataset"] + keys, rows), ""]
    md = "\n".join([f"# Score variants of one VAEDetector fit (`{' '.join(sys.argv)}`)", ""] + parts)
    write_atomic(RESULTS_DIR / f"{a.out_name}.md", md)
    write_atomic(RESULTS_DIR / f"{a.out_name}.json", json.dumps(_jsonable({"options": vars(a), "records": records}), indent=1))
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
