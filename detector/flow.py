"""What a steady flow is expected to send per window, for volume surge and silence.

A triggered flow (password resets, receipts, a welcome series) sends every few seconds to
minutes, all day, with a daily rhythm; a bulk send (newsletter, promo, weekly digest) is a
burst that starts and finishes. Only the first can fall silent or run away, so a scope is
judged only once it has been *steady*: traffic in at least ``min_active`` of the windows
of a learning period (a day by default, longer than any bulk send's tail).

Expected counts are learned per UTC hour of day (a flow at one message a minute by day may
send one an hour at night), as exponentially weighted means per slot, and the spread
around them as a negative-binomial overdispersion ``1/k`` (the share of variance beyond
Poisson), also weighted. State is a plain dict, so a Faust table or a JSON file holds it.
"""
from __future__ import annotations

import math
from operator import mul

from . import volume

_SLOTS = 24
#: Weight of a new window in its hour slot's mean once the slot has this many windows; a
#: slot sees about 12 windows a day (5-minute windows), so the memory is a few days.
SLOT_EWMA = 0.05
_MIN_SLOT_WINDOWS = 3


def _slot(window_start: float) -> int:
    return int(math.floor(window_start / 3600.0)) % _SLOTS


def new_profile() -> dict:
    return {"m": [0.0] * _SLOTS, "n": [0] * _SLOTS, "od": 0.0, "odn": 0}


def expected(profile: dict, window_start: float) -> float:
    """Expected count in the window starting at ``window_start`` (NaN before any data)."""
    s = _slot(window_start)
    if profile["n"][s] >= _MIN_SLOT_WINDOWS:
        return profile["m"][s]
    total = sum(profile["n"])
    if not total:
        return math.nan
    return sum(map(mul, profile["m"], profile["n"])) / total


def dispersion(profile: dict) -> float:
    """Negative-binomial k of counts around their slot means (inf: Poisson, no extra spread)."""
    od = profile["od"]
    return 1.0 / od if od > 1e-9 else math.inf


def learn(profile: dict, window_start: float, count: float, ewma: float) -> None:
    """Add one window's count to its hour slot; update the overdispersion estimate."""
    s = _slot(window_start)
    mu = expected(profile, window_start)
    if math.isfinite(mu) and mu > 0.5:
        # (c - mu)^2 - mu estimates mu^2 / k: the spread beyond Poisson
        sample = ((count - mu) ** 2 - mu) / (mu * mu)
        profile["odn"] += 1
        lam = max(1.0 / profile["odn"], ewma)
        profile["od"] = max(0.0, (1 - lam) * profile["od"] + lam * min(sample, 10.0))
    n = profile["n"][s] + 1
    profile["n"][s] = n
    lam = max(1.0 / n, SLOT_EWMA)
    profile["m"][s] += lam * (count - profile["m"][s])


def p_zero(mu: float, k: float) -> float:
    """P(no message in a window) when ``mu`` are expected with dispersion ``k``."""
    if mu <= 0:
        return 1.0
    return float(volume.silence_probability(mu, k if k > 0 else math.inf))


def trickle_llr(count: float, mu: float, k: float, trickle: float) -> float:
    """Log-likelihood ratio of one window's count: the flow fell to ``trickle`` x its rate,
    against the flow as usual (negative binomial with dispersion ``k``; Poisson when inf).

    Page's CUSUM of these (a Poisson/negative-binomial CUSUM for a drop, Lucas 1985) is the
    silence test: a run of empty windows adds about ``mu`` per window, as ``-log P(zero)``
    did, and a trickle of retries (outcome-only streams cannot tell them from new mail) only
    slows it a little, while a flow at half its volume drifts down. ``trickle = 0``: only
    empty windows count, and any message ends the run.
    """
    if mu <= 0:
        return 0.0
    if trickle <= 0:
        return -math.log(max(p_zero(mu, k), 1e-300)) if count == 0 else -math.inf
    low = trickle * mu
    if not math.isfinite(k):
        return count * math.log(trickle) + mu - low
    return count * math.log(trickle * (k + mu) / (k + low)) + k * math.log((k + mu) / (k + low))
