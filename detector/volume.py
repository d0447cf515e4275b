"""Volume tests: surges (too many events) and silence (none where many were expected).

Why: a send surge or a campaign that silently stopped is visible only in counts, not rates.  Counts per window
are Poisson when arrivals are independent and negative-binomial (var = mean + mean^2/k) when the arrival rate
itself varies between windows, which is the usual case (Lucas 1985 on counted data; anchors.md C.3).  Silence:
P(0 events) = e^-lambda (Poisson) or (k/(k+mu))^k (NB); when it is tiny and zero arrived, the source stopped.
An optional hour-of-week baseline removes the weekly cycle before either test.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

__all__ = [
    "poisson_surge_pvalue",
    "negbin_surge_pvalue",
    "silence_probability",
    "estimate_dispersion",
    "SeasonalBaseline",
]


def _nonneg(v, name):
    a = np.asarray(v, dtype=float)
    if np.any(np.isnan(a)) or np.any(a < 0):
        raise ValueError(f"{name} must be >= 0")
    return a


def _out(res, *inputs):
    return float(res) if all(np.ndim(v) == 0 for v in inputs) else res


def poisson_surge_pvalue(count, expected):
    """P(X >= count) for X ~ Poisson(expected); 1 when count <= 0."""
    c = _nonneg(count, "count")
    lam = _nonneg(expected, "expected")
    if np.any(np.isinf(lam)):
        raise ValueError("expected must be finite")
    c, lam = np.broadcast_arrays(c, lam)
    res = stats.poisson.sf(c - 1, lam)
    res = np.where(c <= 0, 1.0, res)
    res = np.where((lam == 0) & (c > 0), 0.0, res)
    return _out(res, count, expected)


def negbin_surge_pvalue(count, mean, dispersion):
    """P(X >= count) for a negative binomial with the given mean and var = mean + mean^2/dispersion.

    scipy's parametrisation: nbinom(n=k, p=k/(k+mean)).  dispersion = inf is the Poisson limit.
    """
    c = _nonneg(count, "count")
    mu = _nonneg(mean, "mean")
    k = np.asarray(dispersion, dtype=float)
    if np.any(np.isnan(k)) or np.any(k <= 0):
        raise ValueError("dispersion must be > 0 (inf for Poisson)")
    c, mu, k = np.broadcast_arrays(c, mu, k)
    pois = np.asarray(poisson_surge_pvalue(c, mu), dtype=float)
    finite = np.isfinite(k) & (mu > 0)
    res = pois.copy()
    if np.any(finite):
        kk = k[finite]
        tail = stats.nbinom.sf(c[finite] - 1, kk, kk / (kk + mu[finite]))
        res[finite] = np.where(c[finite] <= 0, 1.0, tail)
    return _out(res, count, mean, dispersion)


def silence_probability(expected, dispersion=math.inf):
    """P(X = 0): e^-expected (Poisson) or (k/(k+expected))^k (negative binomial with dispersion k)."""
    mu = _nonneg(expected, "expected")
    k = np.asarray(dispersion, dtype=float)
    if np.any(np.isnan(k)) or np.any(k <= 0):
        raise ValueError("dispersion must be > 0 (inf for Poisson)")
    mu, k = np.broadcast_arrays(mu, k)
    with np.errstate(divide="ignore", invalid="ignore"):
        nb = np.exp(-k * np.log1p(mu / k))
    res = np.where(np.isfinite(k), nb, np.exp(-mu))
    return _out(res, expected, dispersion)


def estimate_dispersion(counts) -> float:
    """Negative-binomial k by the method of moments, k = mean^2 / (var - mean); inf when var <= mean
    (no overdispersion, use Poisson) or fewer than 2 counts."""
    c = _nonneg(np.ravel(counts), "counts")
    if c.size < 2 or np.any(np.isinf(c)):
        return math.inf
    mean = float(c.mean())
    var = float(c.var(ddof=1))
    if var <= mean or mean == 0.0:
        return math.inf
    return mean * mean / (var - mean)


_WEEK_SLOTS = 168
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday; Monday = 0


def hour_of_week(window_start: float) -> int:
    """Hour-of-week slot in UTC, 0 = Monday 00:00-01:00."""
    hours = math.floor(float(window_start) / 3600.0)
    day = hours // 24
    return int(((day + _EPOCH_WEEKDAY) % 7) * 24 + hours % 24)


class SeasonalBaseline:
    """Expected count per window for each UTC hour of the week (optional seasonality for volume tests).

    Keeps a running sum and number of windows per slot.  ``expected`` uses a slot's own mean once it has
    ``min_slot_windows`` windows, else the overall mean; NaN before any data (callers keep warm-up explicit).
    """

    def __init__(self, window_seconds: float, min_slot_windows: int = 1):
        window_seconds = float(window_seconds)
        if not math.isfinite(window_seconds) or window_seconds <= 0 or window_seconds > 3600:
            raise ValueError("window_seconds must be in (0, 3600] so each window falls in one hour slot")
        if int(min_slot_windows) < 1:
            raise ValueError("min_slot_windows must be >= 1")
        self.window_seconds = window_seconds
        self.min_slot_windows = int(min_slot_windows)
        self._sum = [0.0] * _WEEK_SLOTS
        self._n = [0] * _WEEK_SLOTS

    def update(self, window_start: float, count: float) -> None:
        count = float(count)
        if not math.isfinite(count) or count < 0:
            raise ValueError(f"count must be a finite number >= 0, got {count!r}")
        if not math.isfinite(float(window_start)):
            raise ValueError("window_start must be finite Unix seconds")
        slot = hour_of_week(window_start)
        self._sum[slot] += count
        self._n[slot] += 1

    @property
    def n_windows(self) -> int:
        return sum(self._n)

    def expected(self, window_start: float) -> float:
        slot = hour_of_week(window_start)
        if self._n[slot] >= self.min_slot_windows:
            return self._sum[slot] / self._n[slot]
        total = self.n_windows
        return sum(self._sum) / total if total else math.nan

    def to_dict(self) -> dict:
        return {
            "window_seconds": self.window_seconds,
            "min_slot_windows": self.min_slot_windows,
            "sum": list(self._sum),
            "n": list(self._n),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "SeasonalBaseline":
        obj = cls(d["window_seconds"], d.get("min_slot_windows", 1))
        if len(d["sum"]) != _WEEK_SLOTS or len(d["n"]) != _WEEK_SLOTS:
            raise ValueError(f"sum and n must have {_WEEK_SLOTS} hour-of-week slots")
        obj._sum = [float(v) for v in d["sum"]]
        obj._n = [int(v) for v in d["n"]]
        return obj
