"""Delayed feedback: how many deliveries a span's complaints can have come from.

A complaint arrives minutes to days after its delivery (the recipient opens the mail, then
clicks "spam"; the mailbox provider's feedback loop reports it). Counting the complaints that
arrived in a span against the deliveries made in the same span is biased both ways: a send
that just started has deliveries whose complaints are still to come (too low), and once a
send's deliveries slide out of the span its late complaints are still inside (too high: a
clean newsletter paged 24 hours after it went out).

With a lag distribution F (log-normal, median and sigma from the rule), the complaints that
arrive in the span [T - S, T] from a delivery at time t before the span are expected to number
p x (F(T - t) - F(T - S - t)). The span's *exposure* is its own deliveries, each counted in
full, plus these shares of the deliveries before it: the complaints observed in the span are
judged as complaints / exposure, with Poisson confidence bounds. Deliveries inside the span are
not discounted for complaints still to come: that would page on a stream whose real lag is
shorter than the prior (complaints within seconds inflate a young send's rate), while counting
them in full only makes a young send's rate read low until its complaints arrive, which is
the conservative side. Deliveries that left the span are kept in hourly bins until their lag
tail is spent.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr

_HOUR = 3600.0
#: A bin is dropped once less than this share of its complaints can still arrive in a span.
_TAIL = 1e-4


def lag_cdf(t: float, median: float, sigma: float) -> float:
    """P(lag <= t) for a log-normal lag."""
    if t <= 0:
        return 0.0
    return 0.5 * (1.0 + math.erf((math.log(t) - math.log(median)) / (sigma * math.sqrt(2.0))))


def lag_cdf_array(t, median, sigma) -> np.ndarray:
    """:func:`lag_cdf` over arrays (broadcast): 0 where ``t <= 0``."""
    t = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore"):
        z = (np.log(np.maximum(t, 1e-300)) - np.log(median)) / sigma
    return np.where(t > 0, ndtr(z), 0.0)


def retire(st: dict, window_start: float, n: int) -> None:
    """A window left the span: keep its deliveries in an hourly bin for their late complaints."""
    if n:
        key = repr(math.floor(window_start / _HOUR) * _HOUR)
        old = st.setdefault("old", {})
        old[key] = old.get(key, 0) + n


def exposure(st: dict, recent: list[list], span_end: float, span_s: float, median: float, sigma: float,
             fastest: float = 0.0, window: float = 300.0, span_n: float | None = None,
             fastest_sigma: float | None = None) -> float:
    """The span's deliveries plus the shares of earlier deliveries whose complaints arrive in it.

    ``recent`` holds the span's windows as ``[x, n, window_start]``. With ``fastest`` (the median
    of the fastest lag the stream can plausibly have) each of its deliveries counts for the share
    of its complaints that lag would already have brought; without, in full (``span_n``: their sum,
    when the caller has it). ``fastest_sigma``: that lag's sigma (default ``sigma``)."""
    if fastest:
        fs = sigma if fastest_sigma is None else fastest_sigma
        total = sum(r[1] * lag_cdf(span_end - r[2] - window / 2, fastest, fs) for r in recent if r[1])
    else:
        total = float(sum([r[1] for r in recent]) if span_n is None else span_n)
    old = st.get("old")
    if old:
        for key in list(old):
            t = span_end - (float(key) + _HOUR / 2)
            share = lag_cdf(t, median, sigma) - lag_cdf(t - span_s, median, sigma)
            if share < _TAIL and t > span_s:
                del old[key]      # its complaints have all arrived, long ago
                continue
            total += old[key] * share
    return total
