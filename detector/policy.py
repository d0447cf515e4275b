"""Policy thresholds with confidence: fire only when the rate is above the policy rate *with confidence*.

Why: Gmail/Yahoo (0.3% spam), SES (5%/10% bounces, 0.1%/0.5% complaints) enforce rates, and a raw rate of
2/300 says little.  We alert when the one-sided lower confidence bound of the rate exceeds the policy rate
(anchors.md C.10).  Clopper & Pearson (1934, *Biometrika* 26:404-413) is exact and dual to the one-sided
binomial test: lower_CP > p  <=>  binomtest(x, n, p, 'greater').pvalue < alpha.  Wilson (1927, *JASA*
22:209-212) is a little less conservative.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["clopper_pearson_lower", "wilson_lower", "poisson_rate_lower", "exceeds_policy"]


def _inputs(x, n, alpha):
    xa = np.asarray(x, dtype=float)
    na = np.asarray(n, dtype=float)
    xa, na = np.broadcast_arrays(xa, na)
    if np.any(~np.isfinite(xa)) or np.any(~np.isfinite(na)) or np.any(na < 0) or np.any(xa < 0) or np.any(xa > na):
        raise ValueError("need finite counts with 0 <= x <= n")
    if not (0.0 < float(alpha) < 1.0):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return xa, na


def _out(res, x, n):
    return float(res) if np.ndim(x) == 0 and np.ndim(n) == 0 else res


def clopper_pearson_lower(x, n, alpha=0.05):
    """One-sided exact lower bound: beta.ppf(alpha, x, n - x + 1); 0 when x == 0 or n == 0."""
    xa, na = _inputs(x, n, alpha)
    pos = (xa > 0) & (na > 0)
    res = np.zeros(xa.shape)
    if np.any(pos):
        res[pos] = stats.beta.ppf(alpha, xa[pos], na[pos] - xa[pos] + 1)
    return _out(res, x, n)


def wilson_lower(x, n, alpha=0.05):
    """One-sided Wilson score lower bound with z = Phi^-1(1 - alpha); 0 when x == 0 or n == 0."""
    xa, na = _inputs(x, n, alpha)
    z = stats.norm.isf(alpha)
    pos = (xa > 0) & (na > 0)
    res = np.zeros(xa.shape)
    if np.any(pos):
        nn = na[pos]
        ph = xa[pos] / nn
        z2n = z * z / nn
        centre = (ph + z2n / 2.0) / (1.0 + z2n)
        half = z / (1.0 + z2n) * np.sqrt(ph * (1.0 - ph) / nn + z * z / (4.0 * nn * nn))
        res[pos] = np.maximum(centre - half, 0.0)
    return _out(res, x, n)


def poisson_rate_lower(x, exposure, alpha=0.05):
    """One-sided exact lower bound of a Poisson rate: chi2.ppf(alpha, 2x) / (2 exposure); 0 when x == 0.

    For complaints judged against a delayed-feedback exposure (a real number, not a count of
    trials); for rare events it agrees with Clopper-Pearson on the same counts."""
    xa = np.asarray(x, dtype=float)
    ea = np.asarray(exposure, dtype=float)
    if np.any(xa < 0) or np.any(ea <= 0) or not (0.0 < float(alpha) < 1.0):
        raise ValueError("need x >= 0, exposure > 0 and 0 < alpha < 1")
    res = np.where(xa > 0, stats.chi2.ppf(alpha, 2 * np.maximum(xa, 1e-300)) / (2 * ea), 0.0)
    return _out(res, x, exposure)


_METHODS = {"clopper-pearson": clopper_pearson_lower, "wilson": wilson_lower}


def exceeds_policy(x, n, rate, alpha=0.05, method="clopper-pearson"):
    """True where the one-sided (1 - alpha) lower bound of x/n is strictly above the policy ``rate``."""
    if method not in _METHODS:
        raise ValueError(f"method must be one of {sorted(_METHODS)}, got {method!r}")
    r = np.asarray(rate, dtype=float)
    if np.any(~np.isfinite(r)) or np.any(r < 0) or np.any(r >= 1):
        raise ValueError("policy rate must be in [0, 1)")
    lower = np.asarray(_METHODS[method](x, n, alpha))
    res = lower > r
    return bool(res) if res.ndim == 0 else res
