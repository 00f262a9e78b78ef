"""Scoring throughput and peak memory on a large synthetic frame.

Each detector is measured in its own fresh (spawned) process, so memory that
an earlier detector freed but the allocator kept cannot hide the next one's
peak: ``peak RSS delta`` is the peak resident set size during the scoring call
minus the RSS just before it, sampled with psutil in a thread.  (tracemalloc
does not see torch's allocations, so it is not used.)
"""

from __future__ import annotations

import concurrent.futures as cf
import gc
import multiprocessing as mp
import sys
import threading
import time
import traceback

import numpy as np
import pandas as pd

COLS = 20
FIT_ROWS = 20_000
PROBE_ROWS = 20_000
SUBSET_ROWS = 200_000
#: A full pass estimated (from the probe) to take longer than this is
#: replaced by a SUBSET_ROWS pass.
MAX_PASS_S = 240.0
#: Measured scoring passes per detector (medians are reported).
REPEATS = 3

__all__ = ["PeakRSS", "synthetic_frame", "measure", "run_speed"]


class PeakRSS:
    """Context manager: peak RSS of this process during the block (psutil, sampled in a thread).

    Attributes set on exit: ``delta_mib`` (peak minus RSS on entry) and ``peak_mib``.

    Parameters
    ----------
    interval : float, default 0.005
        Sampling period in seconds.
    """

    def __init__(self, interval: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self.interval = interval

    def __enter__(self) -> "PeakRSS":
        gc.collect()
        _malloc_trim()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        self.delta_mib = (self.peak - self.start) / 2**20
        self.peak_mib = self.peak / 2**20


def _malloc_trim() -> None:
    """Return freed heap memory to the OS (glibc only), so that RSS on entry is not
    inflated by memory an earlier call freed; a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def synthetic_frame(n: int, cols: int, seed: int) -> pd.DataFrame:
    """Synthetic numeric table: a 4-d Gaussian latent through a fixed nonlinear map, plus noise.

    The map comes from a fixed seed (1234), so frames made with different
    ``seed`` values share one distribution.

    Parameters
    ----------
    n, cols : int
        Rows and columns.
    seed : int
        Seed of the rows.

    Returns
    -------
    pandas.DataFrame
        float64 columns ``f0..f{cols-1}``.
    """
    A = np.random.default_rng(1234).normal(size=(4, cols))
    rng = np.random.default_rng(seed)
    out = np.empty((n, cols))
    for i in range(0, n, 250_000):
        z = rng.normal(size=(min(250_000, n - i), 4))
        h = z @ A
        out[i:i + len(z)] = np.tanh(h) + 0.5 * h + 0.1 * rng.normal(size=(len(z), cols))
    return pd.DataFrame(out, columns=[f"f{j}" for j in range(cols)])


def _build(name: str, seed: int):
    """(fit(frame), score(frame)) callables for one detector."""
    if name == "vae_core":
        from vae_core import VAEDetector

        det = VAEDetector(seed=seed)
        return det.fit, det.score
    from .baselines import make_tabular_baseline

    det = make_tabular_baseline(name, seed)
    return (lambda f: det.fit(f.to_numpy())), (lambda f: det.decision_function(f.to_numpy()))


def measure(name: str, n_rows: int, seed: int, threads: int, repeats: int = REPEATS) -> dict:
    """Fit ``name`` on FIT_ROWS synthetic rows and time/profile scoring ``n_rows`` rows.

    Meant to run in a fresh process (see :func:`run_speed`).

    Parameters
    ----------
    name : str
        ``"vae_core"`` or a tabular baseline name.
    n_rows : int
        Rows to score (reduced to SUBSET_ROWS if the probe predicts > MAX_PASS_S).
    seed : int
        Detector seed.
    threads : int
        ``torch.set_num_threads`` value.
    repeats : int
        Scoring passes; seconds and peak RSS delta are their medians (the RSS
        delta varies a lot between passes with the allocator's state).

    Returns
    -------
    dict
        fit/score seconds, rows/s, peak RSS delta, or ``error``.
    """
    import torch

    torch.set_num_threads(threads)
    try:
        fit_df = synthetic_frame(FIT_ROWS, COLS, seed=1)
        big = synthetic_frame(n_rows, COLS, seed=2)
        fit, score = _build(name, seed)
        source = {}
        if name == "vae_core":
            from .detectors import vae_core_fingerprint

            source = {"vae_core_sha256": vae_core_fingerprint()["sha256"]}
        t = time.perf_counter()
        fit(fit_df)
        fit_s = time.perf_counter() - t
        probe = min(PROBE_ROWS, n_rows)
        t = time.perf_counter()
        score(big.iloc[:probe])
        est = (time.perf_counter() - t) / probe * n_rows
        rows, note = n_rows, ""
        if est > MAX_PASS_S:
            rows = SUBSET_ROWS
            note = (f"{n_rows:,} rows estimated at {est:.0f} s from a {probe:,}-row probe; "
                    f"scored the first {rows:,} rows instead")
        part = big.iloc[:rows]
        secs, deltas, peaks = [], [], []
        for _ in range(repeats):
            with PeakRSS() as mem:
                t = time.perf_counter()
                out = score(part)
                secs.append(time.perf_counter() - t)
            del out
            deltas.append(mem.delta_mib)
            peaks.append(mem.peak_mib)
        score_s = float(np.median(secs))
        return {"fit_rows": FIT_ROWS, "fit_s": fit_s, "scored_rows": rows, "score_s": score_s,
                "rows_per_s": rows / score_s, "repeats": repeats, "score_s_all": secs,
                "rss_peak_delta_mib": float(np.median(deltas)), "rss_peak_delta_mib_all": deltas,
                "rss_peak_mib": max(peaks), "note": note,
                "call": "score()" if name == "vae_core" else "decision_function()", **source}
    except Exception as exc:
        tb = traceback.format_exc(limit=3)
        print(tb, file=sys.stderr)
        return {"fit_rows": FIT_ROWS, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}


def run_speed(names: list[str], n_rows: int, seed: int, threads: int, log=None) -> dict:
    """Measure each detector in its own spawned process, one after the other.

    Parameters
    ----------
    names : list of str
        Detectors, e.g. ``["vae_core", "pyod_vae"]``; ``pyod_vae`` is the ratio reference.
    n_rows : int
        Rows to score.
    seed, threads : int
        Detector seed and torch threads.
    log : callable, optional
        ``log(message)`` for progress.

    Returns
    -------
    dict
        ``rows``, ``cols``, ``fit_rows``, ``detectors`` (name -> measurement) and
        a ``description``.
    """
    dets = {}
    ctx = mp.get_context("spawn")
    for name in names:
        with cf.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as ex:
            try:
                dets[name] = ex.submit(measure, name, n_rows, seed, threads).result()
            except Exception as exc:  # the child died (e.g. out of memory)
                dets[name] = {"fit_rows": FIT_ROWS, "error": f"{type(exc).__name__}: {exc}"}
        if log:
            v = dets[name]
            log(f"speed {name}: " + (f"ERROR {v['error']}" if "error" in v else
                f"fit {v['fit_s']:.1f}s, {v['scored_rows']:,} rows in {v['score_s']:.1f}s, "
                f"peak RSS +{v['rss_peak_delta_mib']:.0f} MiB"))
    ref = dets.get("pyod_vae", {}).get("rows_per_s")
    for v in dets.values():
        if ref and "rows_per_s" in v:
            v["speed_x_pyod_vae"] = v["rows_per_s"] / ref
    return {
        "rows": n_rows, "cols": COLS, "fit_rows": FIT_ROWS, "detectors": dets,
        "description": (
            f"Each detector is fitted on {FIT_ROWS:,} rows and scores {n_rows:,} rows of the same "
            "distribution (a 4-d Gaussian latent through a fixed nonlinear map, plus noise) in one "
            f"call, after a {PROBE_ROWS:,}-row warm-up probe, each detector in a fresh process; "
            f"seconds and memory are medians of {REPEATS} passes (all passes are in the JSON). "
            "peak RSS Δ = peak resident memory during the call (psutil, sampled every 5 ms) minus "
            "RSS just before it (after gc and malloc_trim); it includes the input's conversions "
            "and the returned result, and varies by a factor of ~2 between passes. "
            "vae_core's `score()` computes all score columns (its `decision_function()` calls "
            "`score()`, so it costs the same). PyOD VAE scores with its default batch size (32)."),
    }
