"""Slow drift: each UTC day's rate against the trailing ``baseline_days`` (default 28).

A rate that creeps up over days (a list ageing, a reputation sliding at one provider) never
looks like a change to a chart whose baseline follows it, and moves too little per hour for a
sequential test to notice. Once a day, the day's (x, n) is tested against the pooled rate of
the days before it, with the day-to-day overdispersion of those days (beta-binomial, as
:mod:`detector.window_test`): it fires when the upper-tail p-value is below ``alpha`` and the
day's rate is at least ``min_effect`` times the baseline. Days that fired do not enter the
baseline, so a drift does not teach itself to be normal. At least a week of history is
needed before the first judgement.
"""
from __future__ import annotations

import math

import numpy as np

from . import window_test

DAY = 86400.0
MIN_HISTORY_DAYS = 7


def day_ends(window_start: float, window: float) -> bool:
    """Is this the last window of its UTC day?"""
    return math.floor((window_start + window) / DAY) != math.floor(window_start / DAY)


def add(st: dict, x: int, n: int) -> None:
    st["dx"] = st.get("dx", 0) + x
    st["dn"] = st.get("dn", 0) + n


def judge(st: dict, baseline_days: int, min_volume: int) -> tuple[int, int, float, float, float] | None:
    """Close the day: (x, n, baseline, rho, p-value) once there is enough history, else None.

    The day is added to the history afterwards by :func:`keep` (or dropped if it fired)."""
    x, n = st.pop("dx", 0), st.pop("dn", 0)
    st["today"] = [x, n]
    hist = st.setdefault("days", [])
    if n < max(1, min_volume) or len(hist) < MIN_HISTORY_DAYS:
        return None
    h = np.asarray(hist[-baseline_days:], dtype=float)
    bx, bn = h[:, 0].sum(), h[:, 1].sum()
    if bn <= 0:
        return None
    p0 = max(bx / bn, 0.5 / bn)  # never zero: a clean history still has a rate it cannot rule out
    rho = float(window_test.estimate_rho(h[:, 0], h[:, 1]))
    if rho > 0:
        p = float(window_test.betabinom_pvalue(x, n, p0, rho))
    else:
        p = float(window_test.binomial_pvalue(x, n, p0))
    return x, n, p0, rho, p


def keep(st: dict, baseline_days: int, fired: bool) -> None:
    today = st.pop("today", None)
    if today is None or fired or today[1] <= 0:
        return
    hist = st.setdefault("days", [])
    hist.append(today)
    del hist[:-baseline_days]
