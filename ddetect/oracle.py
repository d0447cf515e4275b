"""The evaluation's oracle for incidents whose evidence arrives slowly (complaints, ramps).

Not a rule and not part of any rule pack: it exists only inside ``ddetect evaluate``, which
has the simulator's ground truth, and it is the yardstick of the issue's goal "complaint
spikes and ramps within 1.5x of an oracle given the true baseline and the true lag
distribution".

What the oracle knows (and a real detector does not):

* the label's scope (it watches only that scope's messages);
* the true baseline rate ``p0`` (the label's ``baseline_rate``: the observable rate the
  scope's messages would have had without the incident) and the incident rate ``p1`` (the
  label's ``incident_rate``; for a ramp its ``mean_incident_rate``, the mean over the ramp,
  since one fixed alternative is what an exactly calibrated chart can be tuned to);
* for complaints, which delivered message each complaint belongs to and the true complaint
  lag distribution the simulator drew from: log-normal with the campaign's ESP's median
  (:mod:`sim.profiles`, default 1 h, SES 3 h) and ``sigma`` :data:`sim.traffic.COMPLAINT_DELAY_SIGMA`;
* for a rate whose outcome is reported with the trial itself (a block bounce is a delivery
  attempt that ends in a block, after the ESP's retries), each message's accepted time and
  the time its final outcome was posted.

It does not know the onset. Its statistic is Page's CUSUM over the scope's trials in the order
they happened (delivery time for complaints, accepted time for attempts), every change point
a trial, with each trial's evidence counted only once it is observable: at time ``t`` the chart
is ``max(0, max over change points tau of LLR(tau, t))``, where LLR(tau, t) is the exact
log-likelihood ratio, "p1 for every trial from tau on" against "p0 throughout", of everything
observed by ``t``:

* a trial whose positive outcome has been observed: ``log(p1/p0)``;
* a trial whose outcome has been observed negative (reported mode): ``log((1-p1)/(1-p0))``;
* a delivered message with no complaint yet, ``u`` seconds after delivery (lagged mode):
  ``log((1 - p1 F(u)) / (1 - p0 F(u)))`` with ``F`` the true lag CDF (the probability that a
  complaint, had there been one, would have arrived by now); ``F = 1`` gives the
  reported-negative term back;
* a trial not yet reported (reported mode, retries still running): nothing.

Between two positive observations no LLR(tau, t) can grow, so the chart is evaluated exactly at
the instants positive outcomes arrive (:func:`run_chart`), with no time grid. The chart starts
:data:`ORACLE_LEAD` before the onset (or at the run's start); after an alarm before the onset it
restarts (change points after the alarm only), and those alarms are counted and reported as the
oracle's own false alarms.

Its threshold: ``h = detector.cusum.calibrate_h(p0, p1, arl0)``, the exact Brook-Evans
threshold at which Page's Bernoulli CUSUM over the same trials with every outcome known has
an in-control average run length of ``arl0`` trials. That fully observed chart is what the
lagged statistic becomes once all feedback has arrived, and for every change point the lagged
likelihood ratio is the conditional expectation, given what has been observed, of the fully
observed one under "no change" (a likelihood ratio of partial data). Its in-control run length is not solved
exactly. By Monte Carlo (p0 1%, p1 4%, 10 trials a minute) it is at the target within the
noise when the median lag (1 min) is tiny against the ARL0 (tests/evaluate/test_goals.py), and
longer, i.e. more conservative and a slower oracle, when it is not: 1.8x with a 1 h lag (600
trials) at ARL0 20,000, 3.9x at ARL0 3,000. The benchmark's ARL0s are ~1e8 trials, against
which hours of lag are tiny.

``arl0`` is the one of the rule the oracle is compared with (see
:func:`ddetect.evaluate.oracle_arl0`): the ARL0 the engine gave the first matching CUSUM alert
on the label's metric, else the false-alarm budget of the rule pack
(``false_alarms_per_scope_day``) applied to the scope's trials per day, as the engine sets a
CUSUM scope's ARL0 (``max(trials per day / budget, 1e4)``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from detector import cusum
from detector.exposure import lag_cdf_array as lognormal_cdf  # P(lag <= u), 0 for u <= 0; re-exported

#: The chart starts this long before the onset (or at the start of the run, if later).
ORACLE_LEAD = 6 * 3600.0
#: Restarts after pre-onset alarms before the oracle gives up (a chart that alarms this
#: often in control is broken; the result says so).
MAX_RESTARTS = 50


@dataclass
class OracleTrials:
    """The trials of one scope, as the oracle sees them.

    ``send``: when each trial happened (the change-point clock). ``obs``: when its outcome was
    reported (``inf``: not within the stream). ``positive``: whether it is an event of the
    rate's numerator. ``lag_cdf``: None when every outcome is reported at ``obs`` (reported
    mode); otherwise only positives are ever reported and ``lag_cdf(u)`` is the probability
    that a positive outcome is reported within ``u`` seconds of ``send`` (lagged mode)."""

    send: np.ndarray
    obs: np.ndarray
    positive: np.ndarray
    lag_cdf: Callable[[np.ndarray], np.ndarray] | None = None


def llr_terms(trials: OracleTrials, p0: float, p1: float, t: float, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Per trial ``lo:hi``, its log-likelihood-ratio contribution given what is observable at
    time ``t`` (see the module docstring)."""
    a, b = cusum.llr_weights(p0, p1)
    sl = slice(lo, hi)
    seen = trials.obs[sl] <= t
    pos = trials.positive[sl]
    if trials.lag_cdf is None:
        return np.where(seen, np.where(pos, a, -b), 0.0)
    F = np.asarray(trials.lag_cdf(t - trials.send[sl]), dtype=float)
    pending = np.log1p(-p1 * F) - np.log1p(-p0 * F)
    return np.where(seen & pos, a, pending)


def chart_value(trials: OracleTrials, p0: float, p1: float, t: float, since: float) -> float:
    """max(0, max over change points tau in (since, t] of LLR(tau, t)): the change points are the
    trials themselves (in ``send`` order), LLR(tau, t) the sum of the contributions of the trials
    sent at or after tau. ``trials.send`` must be sorted."""
    lo = int(np.searchsorted(trials.send, since, side="right"))
    hi = int(np.searchsorted(trials.send, t, side="right"))
    if hi <= lo:
        return 0.0
    suffix = np.cumsum(llr_terms(trials, p0, p1, t, lo, hi)[::-1])
    return max(0.0, float(suffix.max()))


@dataclass
class OracleRun:
    alarm_at: float | None           # first alarm at or after the onset
    pre_onset_alarms: list[float]    # alarms before the onset (the chart restarted after each)
    statistic_at_onset: float        # the chart just before the onset


def run_chart(trials: OracleTrials, p0: float, p1: float, h: float, t_start: float, t_end: float,
              onset: float) -> OracleRun:
    """Alarms of the oracle's chart over ``[t_start, t_end]``, restarting after each alarm before
    ``onset`` (change points after the alarm only).

    Between two positive observations every LLR(tau, t) is non-increasing in t (a pending
    delivery's term falls as its complaint becomes more overdue, a reported negative subtracts,
    a new trial adds 0), so the chart can only cross its threshold at the moment a positive
    outcome is observed: evaluating it at those instants finds every alarm exactly."""
    order = np.argsort(trials.send, kind="stable")
    trials = OracleTrials(np.asarray(trials.send, float)[order], np.asarray(trials.obs, float)[order],
                          np.asarray(trials.positive, bool)[order], trials.lag_cdf)
    when, count = np.unique(trials.obs[trials.positive & (trials.obs >= t_start) & (trials.obs <= t_end)],
                            return_counts=True)
    a, b = cusum.llr_weights(p0, p1)
    since = t_start - 1e-9
    pre: list[float] = []
    ceiling = 0.0    # an upper bound of the chart: a positive observation raises no LLR by more than a + b
    for t, c in zip(when, count):
        ceiling += c * (a + b)
        if ceiling < h:
            continue
        ceiling = chart_value(trials, p0, p1, float(t), since)
        if ceiling >= h:
            ceiling = 0.0
            if t >= onset:
                return OracleRun(float(t), pre, _value_before(trials, p0, p1, onset, since))
            pre.append(float(t))
            since = float(t)
            if len(pre) > MAX_RESTARTS:
                break
    return OracleRun(None, pre, _value_before(trials, p0, p1, onset, since))


def _value_before(trials: OracleTrials, p0: float, p1: float, onset: float, since: float) -> float:
    return chart_value(trials, p0, p1, onset - 1e-6, since) if since < onset else 0.0


def oracle_delay(trials: OracleTrials, p0: float, p1: float, arl0: float, onset: float, t_start: float,
                 t_end: float) -> dict:
    """The oracle's delay on one incident: chart from ``t_start`` to ``t_end``, threshold at ``arl0``."""
    h = cusum.calibrate_h(p0, p1, arl0)
    run = run_chart(trials, p0, p1, h, t_start, t_end, onset)
    return {"p0": p0, "p1": p1, "arl0": arl0, "h": h,
            "delay_s": None if run.alarm_at is None else run.alarm_at - onset,
            "alarm_at": run.alarm_at, "pre_onset_alarms": len(run.pre_onset_alarms),
            "statistic_at_onset": run.statistic_at_onset, "chart_start": t_start, "chart_end": t_end,
            "bound_trials": cusum.delay_bound(p0, p1, arl0)}
