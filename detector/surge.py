"""Volume surge: evidence that a steady flow runs at several times its usual rate, accumulated
over consecutive windows.

Why: a runaway automation at 3-5x its usual volume is a step up at an unknown window. One
window of a flow that sends 25 messages per 5 minutes holds 75 at 3x: a test of that window
alone against "4x the usual" cannot see it, and a minimum of 100 messages per window never
lets it fire. The test here is a windowed generalised likelihood-ratio scan (Lai 1995; the
"window-limited GLR"): for every candidate onset in the last ``max_run`` windows, the pooled
count ``C`` of the windows since that onset is judged against the pooled usual volume ``M`` of
the same windows (the flow's hour-of-day profile, :mod:`detector.flow`):

* significance: ``P(X >= C) < alpha / max_run`` for ``X`` negative-binomial with mean ``M``
  (the null is the flow's usual rate, with its learned overdispersion; Bonferroni over the
  candidate onsets), and
* a minimum effect: ``C >= factor * M`` (the ratio floor: a flow at 1.5x on a Monday morning,
  or a busier than usual hour, is significant on a busy flow but is not a runaway), and
* ``C >= min_volume`` messages in the run.

Windows of one flow are independent negative-binomial counts ``NB(mu_i, k)`` (Poisson with a
gamma-distributed rate, variance ``mu + mu^2/k``). The upper tail of their sum
(:func:`sum_negbin_sf`) is exact where it has a closed form (Poisson, ``k = inf``: Poisson with
mean ``M = sum mu_i``; equal means: the sum of ``n`` iid ``NB(k, p)`` is ``NB(n k, p)``) and
otherwise the lattice saddlepoint approximation (Lugannani-Rice with Daniels' second continuity
correction; Daniels 1987, Butler 2007 ch. 1), within 0.3% of the exact convolution for the means
of an hour's windows (``tests/test_surge.py``). The moment-matched negative binomial
(:func:`pooled_dispersion`) is reported as the run's dispersion; its tail is too light when
means differ (0.3-0.8 of the exact tail at 2.5-4x), so it is not used for the p-value.

Pure numpy/scipy; the state lives in the caller's plain dict (:func:`detector.detectors.eval_volume`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from . import volume

__all__ = ["pooled_dispersion", "sum_negbin_sf", "ScanResult", "scan"]


def pooled_dispersion(k: float, means) -> float:
    """Negative-binomial dispersion of a sum of independent NB(mu_i, k) counts (moment-matched)."""
    mu = np.asarray(means, dtype=float)
    if not k > 0:
        raise ValueError("dispersion must be > 0 (inf for Poisson)")
    if math.isinf(k):
        return math.inf
    total, sq = float(mu.sum()), float((mu * mu).sum())
    if sq <= 0.0:
        return math.inf
    return k * total * total / sq


def _saddlepoint_sf(count: float, mu: np.ndarray, k: float) -> float:
    """P(X >= count) for X a sum of independent NB(mu_i, k), by the lattice saddlepoint.

    Cumulant generating function, with ``u = e^t - 1`` and ``a_i = mu_i / k``:
    ``K = -k sum log(1 - a_i u)``, ``K' = (1 + u) sum mu_i / (1 - a_i u)``,
    ``K'' = (1 + u) sum mu_i (1 + a_i) / (1 - a_i u)^2``; the saddlepoint solves
    ``K'(s) = count - 1/2``.
    """
    x = count - 0.5
    a = mu / k
    hi = 1.0 / float(a.max())           # K is finite for u < 1 / max(a_i)
    f = lambda u: (1.0 + u) * float(np.sum(mu / (1.0 - a * u))) - x  # noqa: E731
    u = optimize.brentq(f, 0.0, hi * (1.0 - 1e-15), xtol=hi * 1e-15, rtol=1e-14, maxiter=500)
    s = math.log1p(u)
    K = -k * float(np.sum(np.log1p(-a * u)))
    K2 = (1.0 + u) * float(np.sum(mu * (1.0 + a) / (1.0 - a * u) ** 2))
    w = math.sqrt(max(2.0 * (s * x - K), 0.0))
    v = 2.0 * math.sinh(s / 2.0) * math.sqrt(K2)
    if w < 1e-6:
        return 0.5
    p = float(special.ndtr(-w)) + math.exp(-0.5 * w * w) / math.sqrt(2.0 * math.pi) * (1.0 / v - 1.0 / w)
    return min(max(p, 0.0), 1.0)


def sum_negbin_sf(count: float, means, k: float) -> float:
    """P(X >= count) for X the sum of independent NB(mu_i, k) counts (``k = inf``: Poisson)."""
    mu = np.asarray(means, dtype=float)
    if mu.size == 0 or np.any(mu < 0) or not k > 0:
        raise ValueError("means must be >= 0 and k > 0 (inf for Poisson)")
    M = float(mu.sum())
    if count <= 0:
        return 1.0
    if math.isinf(k) or M == 0.0:
        return float(volume.poisson_surge_pvalue(count, M))
    mu = mu[mu > 0]
    if np.ptp(mu) <= 1e-12 * mu.max():      # equal means: exactly NB(n k, p)
        return float(volume.negbin_surge_pvalue(count, M, k * mu.size))
    if count - 0.5 <= M:                    # not a surge; the moment-matched NB is close enough
        return float(volume.negbin_surge_pvalue(count, M, pooled_dispersion(k, mu)))
    return _saddlepoint_sf(float(count), mu, float(k))


@dataclass(frozen=True)
class ScanResult:
    """The strongest candidate run ending at the newest window."""

    fire: bool
    windows: int          # run length (windows since the candidate onset); 0: no candidate
    count: float          # pooled count of the run
    expected: float       # pooled usual volume of the run
    p_value: float        # NB upper tail of the run (1.0 without a candidate)
    threshold: float      # alpha / max_run

    @property
    def ratio(self) -> float:
        return self.count / self.expected if self.expected > 0 else math.inf


def scan(counts, means, k: float, *, factor: float, alpha: float, max_run: int,
         min_volume: float = 0.0, min_expected: float = 0.0) -> ScanResult:
    """Judge every run of the newest ``n`` windows (``n = 1 .. len(counts) <= max_run``).

    ``counts`` and ``means`` are per window, oldest first; the newest window is last. A run
    is a candidate when it passes the effect floor, ``min_volume`` and ``min_expected``; the
    result is the candidate with the smallest p-value (ties: the shortest run), firing when
    that p-value is below ``alpha / max_run``.
    """
    c = np.asarray(counts, dtype=float)[::-1][:max_run]
    mu = np.maximum(np.asarray(means, dtype=float)[::-1][:max_run], 1e-9)
    if c.shape != mu.shape:
        raise ValueError("counts and means must have the same length")
    threshold = alpha / max(int(max_run), 1)
    if c.size == 0:
        return ScanResult(False, 0, 0.0, 0.0, 1.0, threshold)
    C, M = np.cumsum(c), np.cumsum(mu)
    cand = (C >= max(min_volume, 1.0)) & (C >= factor * M) & (M >= min_expected)
    if not cand.any():   # nothing to test: report the newest window
        return ScanResult(False, 0, float(C[0]), float(M[0]), 1.0, threshold)
    idx = np.flatnonzero(cand)
    p = np.array([sum_negbin_sf(C[i], mu[:i + 1], k) for i in idx])
    best = int(np.argmin(p))   # argmin: the first (shortest run) among ties
    i = int(idx[best])
    pv = float(p[best])
    return ScanResult(pv < threshold, i + 1, float(C[i]), float(M[i]), pv, threshold)
