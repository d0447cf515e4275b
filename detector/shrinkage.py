"""Empirical-Bayes baselines for sparse scopes, pooled under their parent scope.

A campaign that sends a few hundred messages a day to one mailbox provider needs weeks to
learn a hard-bounce baseline of its own, and until then it is charted only against the
rule's cap. Its siblings (the other campaigns at the same provider) say what such a rate
usually is and how much it varies between campaigns. Their learned baselines are summarised
here by five sums; a beta prior is fitted to them by the method of moments (beta-binomial
overdispersion, which separates the spread between campaigns from the binomial noise of
each one's warm-up), and a scope still warming up is armed with the posterior of its own
few messages under that prior.

The prior's weight is its concentration ``m`` (pseudo-messages): large when the siblings
agree (a new campaign is armed almost at once), small when they differ (the scope must
still bring most of its own evidence). It is capped by the rule's own warm-up, so a
prior never counts for more than the warm-up a scope would otherwise have needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

from scipy.stats import beta as beta_dist

#: learned baselines a parent needs before its prior is used (a spread needs several)
MIN_SIBLINGS = 5


@dataclass(frozen=True)
class BetaPrior:
    """Beta(m * mean, m * (1 - mean)) over the rates of one parent's scopes."""
    mean: float
    strength: float          # m: pseudo-messages the prior is worth
    siblings: int

    def upper(self, x: int, n: int, confidence: float) -> float:
        """One-sided upper bound of a scope's rate after ``x`` events in ``n`` trials."""
        a = self.strength * self.mean + x
        b = self.strength * (1.0 - self.mean) + (n - x)
        return _beta_quantile(confidence, a, b) if a > 0 and b > 0 else 1.0


@lru_cache(maxsize=4096)
def _beta_quantile(confidence: float, a: float, b: float) -> float:
    """Every warming-up scope of one parent asks for the same quantile at each window close."""
    return float(beta_dist.ppf(confidence, a, b))


class SiblingRates:
    """Running sums of the (x, n) each scope of one parent learned: k, sum x, sum n,
    sum x^2/n, sum n^2. Plain floats, so a partition's clock can store them."""

    __slots__ = ("sums",)

    def __init__(self, sums: Sequence[float] | None = None):
        self.sums = list(sums) if sums else [0.0, 0.0, 0.0, 0.0, 0.0]

    def add(self, x: int, n: int) -> None:
        if n <= 0:
            return
        s = self.sums
        s[0] += 1
        s[1] += x
        s[2] += n
        s[3] += x * x / n
        s[4] += float(n) * n

    def prior(self, max_strength: float, min_siblings: int = MIN_SIBLINGS) -> BetaPrior | None:
        """The method-of-moments beta prior, or None while there are too few siblings.

        With r_i = x_i / n_i, N = sum n_i and mean = sum x_i / N, the weighted spread
        Q = sum n_i (r_i - mean)^2 has expectation
        mean (1 - mean) [(k - 1) + rho (N - sum n_i^2 / N - (k - 1))]
        under a beta-binomial with intra-scope correlation rho = 1 / (m + 1); solving for rho
        gives m. A spread no larger than binomial noise (rho <= 0) means the siblings agree:
        m is the cap.
        """
        k, sx, sn, sx2n, sn2 = self.sums
        if k < min_siblings or sn <= 0:
            return None
        mean = sx / sn
        if mean <= 0.0 or mean >= 1.0:
            return None
        q = sx2n - sn * mean * mean
        var = mean * (1.0 - mean)
        denom = sn - sn2 / sn - (k - 1)
        rho = (q / var - (k - 1)) / denom if denom > 0 else 1.0
        if rho <= 0.0:
            strength = max_strength
        else:
            strength = min(max_strength, 1.0 / min(rho, 1.0) - 1.0)
        return BetaPrior(mean=mean, strength=max(strength, 0.0), siblings=int(k))


def parent_key(rule_name: str, scope: dict, parent_fields: Sequence[str]) -> str:
    """The pool a scope of ``rule_name`` belongs to, e.g. ``hard_bounce_spike|mailbox_provider=gmail``."""
    return rule_name + "|" + "|".join(f"{f}={scope.get(f, '')}" for f in parent_fields)
