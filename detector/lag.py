"""The complaint lag, learned from the stream: each complaint matched to its delivery by ``message_id``.

A complaint arrives minutes to days after its delivery, and how long depends on the ESP and
the mailbox providers' feedback loops. The policy rules judge a span's complaints against
its *exposure* (:mod:`detector.exposure`), which needs that lag; a prior has to err on the
fast side for the span's own deliveries (a young send would otherwise read too high) and on
the slow side for deliveries that left it, which costs detection time: with a 10-minute
"fastest" prior, a send whose complaints really come after an hour is judged against nearly
all its deliveries long before their complaints can have arrived.

Matching complaints to deliveries gives the lag of every matched complaint. They are a
*truncated* sample: at time ``T`` a delivery made at ``d`` can only have shown complaints with
lags up to ``T - d``, so young deliveries contribute only short lags. The fit is the maximum
likelihood log-normal under exactly that truncation,
``sum_i log f(u_i) - log F(T - d_i)``, per ESP (the ``provider`` field). A fit is used only
with at least :data:`MIN_LAGS` matched complaints, and each side of the exposure takes its
conservative end of a 99% interval of the log-median (from the observed information): the
fast end for the span's deliveries, the slow end for the ones that left it; over several ESPs,
the fastest and the slowest of them.

The memory of deliveries is bounded (oldest first) and forgets a delivery after ``ttl`` of
event time; it keeps only deliveries to mailbox providers whose complaints count (the
feedback-loop providers of :mod:`detector.feedback_loops`). In the pipeline a worker matches
the deliveries and complaints it reads; ingest keys events by ``message_id`` so a message's
events share a partition.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from itertools import islice
from typing import Iterable, Mapping

import numpy as np
from scipy import optimize, special, stats

#: Matched complaints needed before a fitted lag replaces the rule's prior.
MIN_LAGS = 10
#: Matched complaints kept per ESP (the newest), for the fit.
SAMPLE = 2000
#: A delivery is forgotten after this much event time (complaints come within days).
DEFAULT_TTL = 7 * 86400.0
DEFAULT_CAPACITY = 1_000_000
#: Two-sided coverage of the log-median interval whose ends the exposure uses.
CONFIDENCE = 0.99
#: Refit after this many new matched complaints (or the first time the minimum is reached).
REFIT_EVERY = 10
_SIGMA_RANGE = (0.1, 4.0)


@dataclass(frozen=True)
class LagFit:
    """A fitted log-normal lag: median ``exp(mu)`` and ``sigma``, with the conservative ends
    of the median's interval; ``n`` matched complaints."""

    median: float
    sigma: float
    median_fast: float
    median_slow: float
    n: int

    def to_dict(self) -> dict:
        return {"median": self.median, "sigma": self.sigma, "median_fast": self.median_fast,
                "median_slow": self.median_slow, "n": self.n}

    @classmethod
    def from_dict(cls, d: Mapping) -> "LagFit":
        return cls(float(d["median"]), float(d["sigma"]), float(d["median_fast"]), float(d["median_slow"]),
                   int(d["n"]))


def _neg_loglik(theta: np.ndarray, log_u: np.ndarray, log_t: np.ndarray) -> float:
    mu, log_sigma = theta
    sigma = math.exp(log_sigma)
    z = (log_u - mu) / sigma
    zt = (log_t - mu) / sigma
    # log f(u) without the -log(u) term (constant in the parameters) minus log F(T - d)
    ll = -0.5 * z * z - log_sigma - special.log_ndtr(zt)
    return -float(ll.sum())


def fit_truncated_lognormal(lags: np.ndarray, horizons: np.ndarray, confidence: float = CONFIDENCE) -> LagFit | None:
    """Maximum-likelihood log-normal of lags each observed only because it was at most its
    horizon (``lags[i] <= horizons[i]``); None without enough data or if the fit fails."""
    lags = np.asarray(lags, dtype=float)
    horizons = np.asarray(horizons, dtype=float)
    ok = (lags > 0) & (horizons >= lags)
    lags, horizons = lags[ok], horizons[ok]
    n = len(lags)
    if n < 2:
        return None
    log_u, log_t = np.log(lags), np.log(horizons)
    start = np.array([float(np.median(log_u)), math.log(max(float(np.std(log_u)), 0.3))])
    bounds = [(float(log_u.min()) - 10.0, float(log_u.max()) + 10.0), tuple(math.log(s) for s in _SIGMA_RANGE)]
    res = optimize.minimize(_neg_loglik, start, args=(log_u, log_t), method="L-BFGS-B", bounds=bounds)
    if not np.all(np.isfinite(res.x)):
        return None
    mu, log_sigma = (float(v) for v in res.x)
    se = _mu_standard_error(res.x, log_u, log_t)
    if not math.isfinite(se):
        return None
    z = float(stats.norm.isf((1.0 - confidence) / 2.0))
    if not (0.0 < mu - z * se and mu + z * se < 18.5):
        return None     # a median below a second or beyond three years: the sample cannot tell yet
    return LagFit(math.exp(mu), math.exp(log_sigma), math.exp(mu - z * se), math.exp(mu + z * se), n)


def _mu_standard_error(theta: np.ndarray, log_u: np.ndarray, log_t: np.ndarray) -> float:
    """Standard error of mu from the observed information (a central-difference Hessian)."""
    h = np.array([1e-4, 1e-4])
    hess = np.zeros((2, 2))
    f = lambda th: _neg_loglik(th, log_u, log_t)  # noqa: E731
    for i in range(2):
        for j in range(2):
            ei, ej = np.eye(2)[i] * h[i], np.eye(2)[j] * h[j]
            hess[i, j] = (f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej) + f(theta - ei - ej)) / (
                4 * h[i] * h[j])
    try:
        cov = np.linalg.inv(hess)
    except np.linalg.LinAlgError:
        return math.inf
    var = cov[0, 0]
    return math.sqrt(var) if var > 0 and math.isfinite(var) else math.inf


class ComplaintLags:
    """Deliveries by ``message_id`` and the lags of the complaints matched to them, per ESP."""

    def __init__(self, feedback_loops: Iterable[str] = (), ttl: float = DEFAULT_TTL,
                 capacity: int = DEFAULT_CAPACITY, sample: int = SAMPLE) -> None:
        self.feedback_loops = frozenset(feedback_loops)
        self.ttl = ttl
        self.capacity = capacity
        self.sample = sample
        self._delivered: dict[str, float] = {}   # insertion order = delivery order, roughly
        self._lags: dict[str, deque] = {}        # esp -> (delivered_at, lag)
        self._new: dict[str, int] = {}
        self.fits: dict[str, LagFit] = {}
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._delivered)

    def observe(self, events: Iterable[Mapping]) -> None:
        """Remember deliveries to feedback-loop providers; match complaints to them."""
        delivered, fbl = self._delivered, self.feedback_loops
        for e in events:
            mid = e.get("message_id")
            if not mid:
                continue
            kind = e["type"]
            if kind == "delivered":
                if e.get("mailbox_provider") in fbl and mid not in delivered:
                    delivered[mid] = e["timestamp"]
            elif kind == "complained":
                at = delivered.pop(mid, None)
                if at is None:
                    continue
                lag = e["timestamp"] - at
                if 0 < lag <= self.ttl:
                    esp = e.get("provider") or ""
                    sample = self._lags.get(esp)
                    if sample is None:
                        sample = self._lags[esp] = deque(maxlen=self.sample)
                    sample.append((at, lag))
                    self._new[esp] = self._new.get(esp, 0) + 1
        excess = len(delivered) - self.capacity
        if excess > 0:
            for mid in list(islice(delivered, excess)):
                del delivered[mid]
            self.evicted += excess

    def expire(self, now: float) -> None:
        """Forget deliveries older than the TTL (their complaints are no longer expected)."""
        delivered = self._delivered
        while delivered:
            mid = next(iter(delivered))
            if now - delivered[mid] <= self.ttl:
                break
            del delivered[mid]

    def refit(self, now: float) -> bool:
        """Refit the ESPs with enough new matched complaints; True if any fit changed."""
        changed = False
        for esp, sample in self._lags.items():
            if len(sample) < MIN_LAGS or (esp in self.fits and self._new.get(esp, 0) < REFIT_EVERY):
                continue
            at = np.fromiter((a for a, _ in sample), float, len(sample))
            lag = np.fromiter((u for _, u in sample), float, len(sample))
            fit = fit_truncated_lognormal(lag, np.maximum(now - at, lag))
            self._new[esp] = 0
            if fit is not None:
                self.fits[esp] = fit
                changed = True
        return changed

    def summary(self) -> dict | None:
        """What the exposure uses: the fastest and the slowest ESP's conservative ends, as
        ``{"fast": [median, sigma], "slow": [median, sigma], "fits": {esp: ...}}``; None
        before any ESP has a fit."""
        return summarise(self.fits)


def summarise(fits: Mapping[str, LagFit]) -> dict | None:
    if not fits:
        return None
    fast = min(fits.values(), key=lambda f: f.median_fast)
    slow = max(fits.values(), key=lambda f: f.median_slow)
    return {"fast": [fast.median_fast, fast.sigma], "slow": [slow.median_slow, slow.sigma],
            "fits": {esp: f.to_dict() for esp, f in sorted(fits.items())}}


def valid_summary(d) -> bool:
    """Is ``d`` a lag summary the policy rules can use (as :func:`summarise` makes it)?"""
    if not isinstance(d, Mapping):
        return False
    for side in ("fast", "slow"):
        v = d.get(side)
        if not (isinstance(v, (list, tuple)) and len(v) == 2
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0
                        for x in v)):
            return False
    return True
