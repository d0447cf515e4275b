"""Fixed-window tests of a scope's event count against its frozen baseline rate.

Why: a window test answers "is this window's rate higher than the baseline?" with a p-value, which is easy to
explain in an alert and to control across many scopes with Benjamini & Hochberg (1995, *JRSS-B* 57(1):289-300).
The binomial tail is exact for independent messages; campaign-to-campaign heterogeneity makes it
anti-conservative, so the beta-binomial variant inflates the variance by the design effect 1 + (n-1)*rho with
rho estimated from past windows (anchors.md C.8; Tarone 1979).  Numbers are checked against scipy in tests.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

__all__ = ["binomial_pvalue", "estimate_rho", "betabinom_pvalue", "benjamini_hochberg"]


def _counts(x, n):
    x = np.asarray(x, dtype=float)
    n = np.asarray(n, dtype=float)
    x, n = np.broadcast_arrays(x, n)
    if np.any(~np.isfinite(x)) or np.any(~np.isfinite(n)):
        raise ValueError("counts x and n must be finite")
    if np.any(n < 0) or np.any(x < 0) or np.any(x > n):
        raise ValueError("need 0 <= x <= n for every window")
    return x, n


def _rate(p, name):
    p = np.asarray(p, dtype=float)
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"{name} must be in [0, 1]")
    return p


def _out(res, *inputs):
    if all(np.ndim(v) == 0 for v in inputs):
        return float(res)
    return res


def binomial_pvalue(x, n, p0):
    """Upper-tail P(X >= x) for X ~ Bin(n, p0), vectorised.

    1 when n == 0 or x == 0; with p0 == 0 any event gives 0, with p0 == 1 every x <= n gives 1.  Uses
    ``scipy.stats.binom.sf(x - 1, n, p0)``, which stays accurate for n ~ 1e9 and tiny tails.
    """
    xa, na = _counts(x, n)
    p = _rate(p0, "p0")
    xa, na, p = np.broadcast_arrays(xa, na, p)
    with np.errstate(invalid="ignore"):
        res = stats.binom.sf(xa - 1, na, p)
    res = np.where((na == 0) | (xa <= 0), 1.0, res)
    res = np.where((p == 0) & (xa > 0), 0.0, res)
    res = np.where((p == 1) & (xa <= na), 1.0, res)
    return _out(np.clip(res, 0.0, 1.0), x, n, p0)


def estimate_rho(x, n, min_windows: int = 3) -> float:
    """Beta-binomial intra-class correlation rho from historical windows, by the method of moments.

    With mu = sum(x)/sum(n) and Pearson X^2 = sum((x_i - n_i*mu)^2 / (n_i*mu*(1-mu))), E[X^2] =
    (k-1) + rho * sum((n_i-1)(1-n_i/N)), so rho = (X^2 - (k-1)) / sum((n_i-1)(1-n_i/N)).  With equal n this is
    the anchors C.8 formula (s_p^2 / (mu(1-mu)/n) - 1)/(n - 1).  Clamped to [0, 1); 0 when there are fewer than
    ``min_windows`` non-empty windows, no events (or only events), or no overdispersion.
    """
    xa, na = _counts(np.ravel(x), np.ravel(n))
    keep = na > 0
    xa, na = xa[keep], na[keep]
    k = xa.size
    if k < max(2, min_windows):
        return 0.0
    total = na.sum()
    mu = xa.sum() / total
    if mu <= 0.0 or mu >= 1.0:
        return 0.0
    chi2 = np.sum((xa - na * mu) ** 2 / (na * mu * (1.0 - mu)))
    denom = np.sum((na - 1.0) * (1.0 - na / total))
    if denom <= 0.0:
        return 0.0
    rho = (chi2 - (k - 1)) / denom
    if not np.isfinite(rho) or rho <= 0.0:
        return 0.0
    return float(min(rho, np.nextafter(1.0, 0.0)))


def betabinom_pvalue(x, n, mu, rho):
    """Upper-tail P(X >= x) for X ~ BetaBinom(n, a, b) with mean mu and ICC rho, vectorised.

    a = mu(1/rho - 1), b = (1-mu)(1/rho - 1) (anchors C.8).  rho == 0, or a degenerate mu of 0 or 1, falls
    back to the binomial tail.
    """
    xa, na = _counts(x, n)
    m = _rate(mu, "mu")
    r = np.asarray(rho, dtype=float)
    if np.any(~np.isfinite(r)) or np.any(r < 0) or np.any(r >= 1):
        raise ValueError("rho must be in [0, 1)")
    xa, na, m, r = np.broadcast_arrays(xa, na, m, r)
    binom = np.asarray(binomial_pvalue(xa, na, m), dtype=float)
    over = (r > 0) & (m > 0) & (m < 1)
    res = binom.copy()
    if np.any(over):
        scale = 1.0 / r[over] - 1.0
        a = m[over] * scale
        b = (1.0 - m[over]) * scale
        tail = stats.betabinom.sf(xa[over] - 1, na[over], a, b)
        res[over] = np.where((na[over] == 0) | (xa[over] <= 0), 1.0, tail)
    return _out(np.clip(res, 0.0, 1.0), x, n, mu, rho)


def benjamini_hochberg(pvalues, q: float) -> np.ndarray:
    """Rejection mask of the Benjamini-Hochberg step-up procedure at FDR level q (BH 1995).

    Rejects H_(1..k) for the largest k with p_(k) <= k*q/m, i.e. BH-adjusted p <= q
    (``scipy.stats.false_discovery_control``).  Empty input gives an empty mask.
    """
    if not (0.0 < float(q) < 1.0):
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    p = np.asarray(pvalues, dtype=float)
    if p.size == 0:
        return np.zeros(p.shape, dtype=bool)
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError("p-values must be finite and in [0, 1]")
    flat = p.ravel()
    adjusted = stats.false_discovery_control(flat, method="bh")
    return (adjusted <= q).reshape(p.shape)
