"""A seeded generator of sensor frames with five labelled kinds of anomaly.

Each frame holds several sensors (series) with two readings each, ``temperature`` and
``humidity``, every 10 minutes. Both follow a daily cycle (humidity moves against temperature)
with AR(1) noise; each sensor has its own level, amplitude, phase and noise level, from quiet to
noisy. A frame has a *history* (lightly contaminated: a few labelled spikes per sensor, as real
training data is never clean) and a *test* period, right after it, in which every kind of
:data:`KINDS` is injected ``events_per_kind`` times, each into one reading of one sensor:

===================  ==================================================================  ==========
kind                 what is done to the reading                                          points
===================  ==================================================================  ==========
``spike``            one point moved by 6-10 noise standard deviations, up or down        1
``level_shift``      a step of 4-6 noise standard deviations, up or down                  18-36
``variance_burst``   extra Gaussian noise: the noise standard deviation times 4-6         12-24
``stuck``            the reading freezes at its last value (a flat-lined sensor)          36-72
``broken_pattern``   the daily cycle runs 12 hours out of phase                           48-72
===================  ==================================================================  ==========

Magnitudes are in units of that reading's noise standard deviation, so the same kind is as hard
on a quiet sensor as on a noisy one relative to the noise, but not relative to the daily cycle.
Events of one sensor are at least ``min_gap`` points apart and away from the ends of the test
period, so a window or a tolerance never spans two events. Rows are ordered sensor by sensor, then
by time, so each event is one contiguous run of test rows (``start``, ``stop``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.signal import lfilter

__all__ = ["KINDS", "VALUE_COLUMNS", "SuiteSpec", "SyntheticFrame", "make_frame"]

#: The five kinds of anomaly, in report order.
KINDS = ("spike", "level_shift", "variance_burst", "stuck", "broken_pattern")
VALUE_COLUMNS = ("temperature", "humidity")
_STEPS_PER_DAY = 144  # 10-minute readings
_AR = 0.6  # AR(1) coefficient of the noise
#: (min, max) points of each kind; a spike is one point.
_LENGTHS = {"spike": (1, 1), "level_shift": (18, 36), "variance_burst": (12, 24), "stuck": (36, 72),
            "broken_pattern": (48, 72)}


@dataclass(frozen=True)
class SuiteSpec:
    """Shape of a generated frame.

    Parameters
    ----------
    temperature_noise : tuple of float
        Noise standard deviation of each sensor's temperature (one entry per sensor); humidity's
        is twice as large.
    history_days, test_days : int
        Length of the history and of the test period, in days of 144 readings.
    events_per_kind : int
        Test events of each kind per frame.
    history_spikes : int
        Labelled spikes per sensor in the history (the contamination).
    min_gap : int
        Least number of points between two events of one sensor, and from the ends of the test
        period.
    """

    temperature_noise: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    history_days: int = 14
    test_days: int = 7
    events_per_kind: int = 2
    history_spikes: int = 2
    min_gap: int = 96


@dataclass(frozen=True)
class SyntheticFrame:
    """One generated frame.

    Attributes
    ----------
    history, test : pandas.DataFrame
        Columns ``timestamp`` (UTC datetimes), ``sensor`` and :data:`VALUE_COLUMNS`; rows sensor
        by sensor, then by time.
    history_labels, labels : numpy.ndarray of int64
        1 on the anomalous rows of ``history`` (the contamination) and of ``test``.
    clean_test : pandas.DataFrame
        ``test`` as it was before the events were injected (for checks of the generator).
    events : pandas.DataFrame
        One row per test event: ``kind``, ``sensor``, ``column``, ``start``, ``stop`` (its test
        rows are ``start .. stop - 1``), ``noise_sd`` (that reading's noise standard deviation),
        ``first_time``, ``last_time``.
    seed : int
        The seed it was generated from.
    """

    history: pd.DataFrame
    test: pd.DataFrame
    history_labels: np.ndarray
    labels: np.ndarray
    clean_test: pd.DataFrame
    events: pd.DataFrame
    seed: int


def _sensor_signals(rng: np.random.Generator, n: int, noise_t: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clean daily cycles (n, 2), their 12-hour-shifted versions, and the AR(1) noise (n, 2)."""
    level_t, amp_t = rng.uniform(15.0, 25.0), rng.uniform(2.0, 4.0)
    level_h, slope_h = rng.uniform(45.0, 65.0), rng.uniform(1.0, 2.0)
    phase = rng.uniform(0.0, 2 * np.pi)

    def cycle(shift: float) -> np.ndarray:
        x = 2 * np.pi * (np.arange(n) + shift) / _STEPS_PER_DAY + phase
        t = amp_t * (np.sin(x) + 0.25 * np.sin(2 * x + 1.0))
        return np.stack([level_t + t, level_h - slope_h * t], axis=1)

    sigma = np.array([noise_t, 2.0 * noise_t])
    z = rng.normal(size=(n, 2)) * sigma * np.sqrt(1 - _AR**2)
    noise = lfilter([1.0], [1.0, -_AR], z, axis=0)
    return cycle(0.0), cycle(_STEPS_PER_DAY / 2), noise


def _place(rng: np.random.Generator, taken: list[tuple[int, int]], length: int, n_test: int, gap: int) -> int:
    """A start in the test period whose event keeps ``gap`` points from the others and the ends."""
    for _ in range(10_000 if n_test - 2 * gap - length >= 0 else 0):
        start = int(rng.integers(gap, n_test - gap - length + 1))
        if all(start + length + gap <= a or b + gap <= start for a, b in taken):
            return start
    raise ValueError(f"no room for an event of {length} points: lower events_per_kind or min_gap")


def _inject(kind: str, x: np.ndarray, shifted: np.ndarray, clean: np.ndarray, sigma: float,
            lo: int, hi: int, rng: np.random.Generator) -> None:
    """Apply ``kind`` to ``x[lo:hi]`` in place (``clean``/``shifted``: the reading's daily cycle)."""
    sign = rng.choice([-1.0, 1.0])
    if kind == "spike":
        x[lo:hi] += sign * rng.uniform(6.0, 10.0) * sigma
    elif kind == "level_shift":
        x[lo:hi] += sign * rng.uniform(4.0, 6.0) * sigma
    elif kind == "variance_burst":
        k = rng.uniform(4.0, 6.0)
        x[lo:hi] += rng.normal(size=hi - lo) * sigma * np.sqrt(k**2 - 1)
    elif kind == "stuck":
        x[lo:hi] = x[lo - 1]
    elif kind == "broken_pattern":
        x[lo:hi] += shifted[lo:hi] - clean[lo:hi]
    else:
        raise ValueError(f"unknown anomaly kind {kind!r}; expected one of {KINDS}")


def make_frame(seed: int, spec: SuiteSpec = SuiteSpec()) -> SyntheticFrame:
    """Generate one frame: history, test period, labels and the event table.

    Parameters
    ----------
    seed : int
        Seeds everything; the same seed and spec give identical frames.
    spec : SuiteSpec, optional
        Sizes, noise levels and event counts.

    Returns
    -------
    SyntheticFrame
    """
    rng = np.random.default_rng([seed, 20261201])
    n_hist, n_test = spec.history_days * _STEPS_PER_DAY, spec.test_days * _STEPS_PER_DAY
    n = n_hist + n_test
    sensors = [f"s{j}" for j in range(len(spec.temperature_noise))]
    values = np.empty((len(sensors), n, 2))
    hist_lab = np.zeros((len(sensors), n_hist), dtype=np.int64)
    test_lab = np.zeros((len(sensors), n_test), dtype=np.int64)
    shifted_all, clean_all = [], []
    for j, noise_t in enumerate(spec.temperature_noise):
        clean, shifted, noise = _sensor_signals(rng, n, noise_t)
        values[j] = clean + noise
        clean_all.append(clean)
        shifted_all.append(shifted)
        for i in rng.choice(np.arange(spec.min_gap, n_hist - spec.min_gap), spec.history_spikes, replace=False):
            c = int(rng.integers(2))
            _inject("spike", values[j, :, c], shifted[:, c], clean[:, c], noise_t * (1 + c), i, i + 1, rng)
            hist_lab[j, i] = 1
    before_events = values.copy()
    taken: dict[int, list[tuple[int, int]]] = {j: [] for j in range(len(sensors))}
    rows = []
    order = rng.permutation(len(KINDS) * spec.events_per_kind)
    offset = int(rng.integers(len(sensors)))
    for i, e in enumerate(order):  # sensors take turns, so no sensor gets more than its share
        kind = KINDS[e % len(KINDS)]
        j = (i + offset) % len(sensors)
        c = int(rng.integers(2))
        lo_len, hi_len = _LENGTHS[kind]
        length = int(rng.integers(lo_len, hi_len + 1))
        start = _place(rng, taken[j], length, n_test, spec.min_gap)
        taken[j].append((start, start + length))
        sigma = spec.temperature_noise[j] * (1 + c)
        a, b = n_hist + start, n_hist + start + length
        _inject(kind, values[j, :, c], shifted_all[j][:, c], clean_all[j][:, c], sigma, a, b, rng)
        test_lab[j, start : start + length] = 1
        rows.append({"kind": kind, "sensor": sensors[j], "column": VALUE_COLUMNS[c],
                     "start": j * n_test + start, "stop": j * n_test + start + length, "noise_sd": sigma})
    times = pd.date_range("2024-01-01", periods=n, freq="10min", tz="UTC")

    def frame(part: slice, values: np.ndarray = values) -> pd.DataFrame:
        k = len(times[part])
        out = pd.DataFrame({"timestamp": np.tile(times[part], len(sensors)),
                            "sensor": np.repeat(sensors, k)})
        for c, col in enumerate(VALUE_COLUMNS):
            out[col] = values[:, part, c].ravel()
        return out

    test = frame(slice(n_hist, n))
    events = pd.DataFrame(rows).sort_values("start", ignore_index=True)
    events["first_time"] = test["timestamp"].to_numpy()[events["start"]]
    events["last_time"] = test["timestamp"].to_numpy()[events["stop"] - 1]
    return SyntheticFrame(frame(slice(0, n_hist)), test, hist_lab.ravel(), test_lab.ravel(),
                          frame(slice(n_hist, n), before_events), events, seed)
