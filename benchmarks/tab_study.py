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

``--variants`` picks groups of variants (comma-separated; default ``latent``, the above):

- ``combo`` (same one fit): ``recon`` (the ``recon_error`` column), and ``ours+recon`` and
  ``nll+recon``: the sum of two score columns, each as a robust z-score on the held-out rows;
- ``trim`` (a second fit with ``trim_fraction`` 0.1): ``trim`` and ``trim:ours+recon``;
- ``trimens`` (``TRIM_ENSEMBLE`` fits with ``trim_fraction`` 0.1 on all the train rows, seeds ``seed``,
  ``1000 * seed + 1``, ...): ``trimens`` = the mean of their ``ours`` z-scores (each on its own
  held-out rows), ``trimens+default`` the same with the default fit's as one more member;
- ``ens`` (``ENSEMBLE`` more fits, each ``VAEDetector(seed=1000 * seed + i)`` on its own random
  ``ENSEMBLE_ROWS`` share of the train rows, drawn without replacement): ``ens`` = the mean over the
  members of their ``ours`` z-scores, ``ens:ours+recon`` the mean of their ``ours+recon`` sums; each
  member's z-scores are taken on its own held-out rows.

Rows are scored alone against fixed training latents and fixed held-out statistics, so a variant
stays deterministic for a seed and independent of which rows are scored together. This is a
measurement outside ``vae_core``; nothing here changes the detector. Writes ``results/OUT.json``
and ``.md`` (and, with ``--records-jsonl``, one line per finished split as it goes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from . import data, metrics, report
from .run import RESULTS_DIR, _jsonable, write_atomic

__all__ = ["latent_means", "knn_distance", "robust_z", "variants", "combo_variants", "fit_scores", "main"]

K = 5
ENSEMBLE = 4
ENSEMBLE_ROWS = 0.7
TRIM_ENSEMBLE = 3
GROUPS = ("latent", "combo", "trim", "trimens", "ens")


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


def fit_scores(X_train, X_test, seed: int, **params):
    """Fit ``VAEDetector(seed=seed, **params)`` on ``X_train``; returns (detector, score frames of its
    held-out validation rows and of ``X_test``, fit seconds)."""
    from vae_core import VAEDetector
    from vae_core.detector import split_indices

    t = time.perf_counter()
    det = VAEDetector(seed=seed, **params).fit(X_train)
    fit_s = time.perf_counter() - t
    _, val_idx = split_indices(len(X_train), det.config_.validation_fraction, det.config_.seed)
    return det, det.score(X_train.iloc[val_idx]), det.score(X_test), fit_s


def combo_variants(val, test, prefix: str = "") -> dict[str, np.ndarray]:
    """``ours``, ``recon``, ``ours+recon`` and ``nll+recon`` of one fit's validation/test score frames."""
    z = {c: robust_z(test[c].to_numpy(), val[c].to_numpy()) for c in ("anomaly_score", "nll_iwae", "recon_error")}
    return {f"{prefix}ours": test["anomaly_score"].to_numpy(), f"{prefix}recon": test["recon_error"].to_numpy(),
            f"{prefix}ours+recon": z["anomaly_score"] + z["recon_error"],
            f"{prefix}nll+recon": z["nll_iwae"] + z["recon_error"]}


def variants(X_train, X_test, seed: int, groups=("latent",)) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The score variants of ``groups`` for ``X_test``; returns (scores, fit seconds per group)."""
    from vae_core.detector import split_indices

    det, val, test, fit_s = fit_scores(X_train, X_test, seed)
    out, secs = {"ours": test["anomaly_score"].to_numpy()}, {"default": fit_s}
    if "latent" in groups:
        tr_idx, val_idx = split_indices(len(X_train), det.config_.validation_fraction, det.config_.seed)
        z_tr = latent_means(det, X_train.iloc[tr_idx])
        k_val, k_test = (knn_distance(z_tr, latent_means(det, f)) for f in (X_train.iloc[val_idx], X_test))
        out |= {"knn_latent": k_test, "ours+knn_latent": robust_z(out["ours"], val["anomaly_score"].to_numpy())
                + robust_z(k_test, k_val)}
    if "combo" in groups:
        out |= combo_variants(val, test)
    if "trim" in groups:
        _, tval, ttest, secs["trim"] = fit_scores(X_train, X_test, seed, trim_fraction=0.1)
        c = combo_variants(tval, ttest, "trim:")
        out |= {"trim": c["trim:ours"], "trim:ours+recon": c["trim:ours+recon"]}
    if "trimens" in groups:
        zs, secs["trimens"] = [], 0.0
        for i in range(TRIM_ENSEMBLE):
            _, mval, mtest, s = fit_scores(X_train, X_test, seed if i == 0 else 1000 * seed + i, trim_fraction=0.1)
            secs["trimens"] += s
            zs.append(robust_z(mtest["anomaly_score"].to_numpy(), mval["anomaly_score"].to_numpy()))
        out |= {"trimens": np.mean(zs, axis=0),
                "trimens+default": np.mean(zs + [robust_z(out["ours"], val["anomaly_score"].to_numpy())], axis=0)}
    if "ens" in groups:
        rng = np.random.default_rng(seed)
        members, secs["ens"] = [], 0.0
        for i in range(ENSEMBLE):
            rows = np.sort(rng.choice(len(X_train), max(10, int(ENSEMBLE_ROWS * len(X_train))), replace=False))
            _, mval, mtest, s = fit_scores(X_train.iloc[rows], X_test, 1000 * seed + i)
            secs["ens"] += s
            members.append((robust_z(mtest["anomaly_score"].to_numpy(), mval["anomaly_score"].to_numpy()),
                            combo_variants(mval, mtest)["ours+recon"]))
        out |= {"ens": np.mean([m[0] for m in members], axis=0),
                "ens:ours+recon": np.mean([m[1] for m in members], axis=0)}
    return out, secs


def main(argv=None) -> int:
    """Entry point; returns the process exit code."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.tab_study", description=__doc__.split("\n")[0])
    p.add_argument("--datasets", required=True)
    p.add_argument("--seeds", default="0")
    p.add_argument("--train-cap", type=int, default=2000)
    p.add_argument("--out-name", default="tab_study")
    p.add_argument("--variants", default="latent", help=f"comma-separated groups of {GROUPS}")
    p.add_argument("--records-jsonl", default=None, help="append each finished split's records here")
    a = p.parse_args(argv)
    groups = tuple(a.variants.split(","))
    bad = sorted(set(groups) - set(GROUPS))
    if bad:
        p.error(f"unknown --variants {bad}; choose from {GROUPS}")
    import torch

    torch.set_num_threads(1)
    records = []
    for name in a.datasets.split(","):
        X, y = data.load_tabular(name)
        for seed in (int(s) for s in a.seeds.split(",")):
            sp = data.split_tabular(X, y, seed, train_cap=a.train_cap or None)
            scores, secs = variants(sp.X_train, sp.X_test, seed, groups)
            for key, s in scores.items():
                records.append({"dataset": name, "seed": seed, "key": key, "fit_s": secs,
                                "auroc": metrics.auroc(sp.y_test, s), "auprc": metrics.auprc(sp.y_test, s)})
            if a.records_jsonl:
                with open(a.records_jsonl, "a") as f:
                    f.writelines(json.dumps(_jsonable(r)) + "\n" for r in records[-len(scores):])
            fit_txt = " ".join(f"{g} {v:.1f}s" for g, v in secs.items())
            print(f"{name} seed {seed} fit {fit_txt} " + " ".join(
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
