"""One evaluation step per rule and scope, at each closed window.

Every function here takes the rule, the scope's state for that rule (a plain dict, so a
Faust table or a JSON snapshot can hold it) and the window's numbers, updates the state
and returns a :class:`Finding`. Findings of direct tests carry their decision; findings
of window tests carry a p-value and are decided together, per round, by
Benjamini-Hochberg in :func:`decide_round`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
from scipy.stats import beta as beta_dist

from . import cusum, drift, exposure, flow, policy, surge, volume, window_test
from .shrinkage import BetaPrior
from .counts import COUNTERS
from .rates import METRICS

if TYPE_CHECKING:   # the rule loader reads the test table (registry.py), which reads this module
    from .rules import Rule

_MAX_HISTORY = 288  # windows of (x, n) kept for overdispersion estimates
BASELINE_CONFIDENCE = 0.95
PRIOR_CONFIDENCE = 0.999   # quantile of the siblings' prior a scope without a baseline is armed at


@dataclass
class Finding:
    rule: Rule
    scope_id: str
    window_start: float
    x: int
    n: int
    fire: bool | None = None       # None: decided later (window tests)
    calm: bool = False             # evidence the incident is over (counts towards resolve)
    p_value: float | None = None
    statistic: float | None = None
    baseline: float | None = None
    threshold: float | None = None
    expected: float | None = None
    detected_at: float | None = None   # event time of a mid-window (sequential) alarm
    extra: dict[str, Any] = field(default_factory=dict)


def new_state() -> dict:
    return {"phase": "warmup", "wx": 0, "wn": 0, "ww": 0, "hist": [], "recent": [],
            "firing": False, "alert_id": None, "fired_at": None, "quiet": 0}


def relearn(st: dict) -> None:
    """After an incident resolves, learn the baseline again.

    The list, the content or the provider's view of the sender may have changed for good (a
    campaign now mailing an older segment bounces at 1.2% instead of 0.5%); a baseline frozen
    before the incident would page again and again on the new normal. Warm-up starts over,
    charted against ``baseline_cap`` meanwhile (:func:`provisional_chart`), so an incident
    that comes back during it is still caught.

    A scope armed on its siblings' prior (:func:`close_cusum`) learns its own baseline this
    time: the incident may have been the prior's mistake about it.
    """
    own = "eb" in st or st.get("own_only", False)
    st.clear()
    st.update(new_state())
    if own:
        st["own_only"] = True


def _round_sig(p: float, digits: int = 2) -> float:
    """Round a baseline so calibrations are shared between similar scopes (cache hits)."""
    if p <= 0:
        return p
    return float(f"{p:.{digits}g}")


def _baseline(rule: Rule, x: int, n: int) -> float:
    """The frozen baseline: an upper confidence bound of the warm-up rate, clamped.

    The chart's false-alarm rate holds only if the true in-control rate is <= p0; a point
    estimate from a few thousand messages is too low half of the time (12 bounces in 2,000
    can easily be a 1% list), so the one-sided 95% Clopper-Pearson upper bound is used. The
    floor avoids p0 = 0; the cap stops an incident that began during warm-up from becoming
    the baseline (a 15% block rate is never "normal").
    """
    learned = float(beta_dist.ppf(BASELINE_CONFIDENCE, x + 1, n - x)) if x < n else 1.0
    p0 = max(learned, rule.baseline_floor)
    return min(p0, rule.baseline_cap) if rule.baseline_cap is not None else p0


def _warm(rule: Rule, st: dict, x: int, n: int) -> bool:
    """Accumulate warm-up data; return True once the baseline can be frozen."""
    if n > 0:
        st["wx"] += x
        st["wn"] += n
        st["ww"] += 1
        st["hist"].append([x, n])
        del st["hist"][:-_MAX_HISTORY]
    return st["wn"] >= max(rule.warmup_messages, 1) and st["ww"] >= rule.warmup_windows


def _span(rule: Rule, st: dict, x: int, n: int, entry: list | None = None,
          on_drop: Callable[[list], None] | None = None) -> tuple[int, int]:
    """Add a window to the rule's rolling span; return the span's (x, n). ``entry`` is what
    the span keeps for the window (default ``[x, n]``); ``on_drop`` hears each one that leaves."""
    recent = st["recent"]
    recent.append(entry if entry is not None else [x, n])
    if len(recent) > rule.span_windows:
        if on_drop is not None:
            for old in recent[:-rule.span_windows]:
                on_drop(old)
        del recent[:-rule.span_windows]
    return sum([r[0] for r in recent]), sum([r[1] for r in recent])


_POOL_KEYS = {p: (p + "x", p + "n", p + "s") for p in ("p", "c")}


def pool(rule: Rule, st: dict, x: int, n: int, sends: int, prefix: str = "p") -> tuple[int, int] | None:
    """Hold back windows that are too thin to judge, and add them to the next ones.

    A window counts once it has ``min_volume`` trials (CUSUM) and the scope sent at least
    ``min_sends`` messages in it. Outcomes lag sends: after a bulk send stops, its deferral
    retries, late blocks and complaints trickle in with almost no deliveries beside them, and a
    "12 deferrals out of 38" window would look like an incident. Pooling keeps the evidence
    (summed counts give the same LLR) without judging the tail on its own. ``prefix`` names
    the pool, so one rule can keep two (the chart's and the calm test's).
    """
    kx, kn, ks = _POOL_KEYS.get(prefix) or (prefix + "x", prefix + "n", prefix + "s")
    x, n, sends = x + st.get(kx, 0), n + st.get(kn, 0), sends + st.get(ks, 0)
    need_n = max(1, rule.min_volume) if rule.test == "cusum" else 1
    if n < need_n or sends < rule.min_sends:
        st[kx], st[kn], st[ks] = x, n, sends
        return None
    st[kx] = st[kn] = st[ks] = 0
    return x, n


def chart_arl0(rule: Rule, trials_per_day: float | None) -> float:
    """The in-control run length (messages) a chart is calibrated to.

    With ``false_alarms_per_scope_day`` the budget is per scope and day, whatever the scope's
    traffic: ARL0 = its daily trials / the budget, so a scope of 300 messages a day and one of
    3 million are both expected to page falsely once per 1/budget days (a fixed ARL0 in
    messages pages a busy scope ten thousand times as often as a sparse one). Rounded to a
    quarter decade, so calibrations are shared. Without it, ``arl0``.
    """
    if not rule.fa_per_scope_day or not trials_per_day or trials_per_day <= 0:
        return rule.arl0
    arl0 = max(trials_per_day / rule.fa_per_scope_day, 1e4)
    return float(10 ** (round(4 * math.log10(arl0)) / 4))


def bank(rule: Rule, p0: float, arl0: float, alternatives: Sequence[float] | None = None) -> tuple[dict, list[dict]]:
    """The chart for ``rule.shift`` and one more per shift of ``rule.bank``, all at baseline ``p0``
    (``alternatives``: the incident rates instead, one chart each).

    A chart tuned to one shift is slow on others (tuned to 3x, it needs twice the trials of the
    optimal chart on a 20x stale list), and the size of the next incident is unknown. Each chart
    of a bank of k is calibrated to k x ``arl0``: false alarms of the bank add up to at most
    those of one chart at ``arl0`` (a union bound), and an incident is caught by the chart
    nearest its size, at a cost of about ln(k) / I in delay. ``arl0`` stays the bank's budget
    (what an alert reports); ``chart_arl0`` is each chart's own.
    """
    rates = list(alternatives) if alternatives else [p0 * shift for shift in (rule.shift, *rule.bank)]
    k = len(rates)
    per_chart = arl0 * k
    charts = []
    for i, rate in enumerate(rates):
        p1 = min(rate, 0.99)
        if i == 0 and rule.p1 is not None and p0 < rule.p1 < 1 and not alternatives:
            p1 = rule.p1
        if charts and p1 <= charts[-1]["p1"]:
            continue    # capped at 0.99 like the one before it
        charts.append({"p0": p0, "p1": p1, "h": cusum.calibrate_h(p0, p1, per_chart), "arl0": arl0,
                       "chart_arl0": per_chart, "s": 0.0, "run_x": 0, "run_n": 0})
    return charts[0], charts[1:]


def _arm_cusum(rule: Rule, st: dict, trials_per_day: float | None = None, prior: BetaPrior | None = None,
               prior_p0: float | None = None) -> None:
    """Freeze the warm-up baseline and calibrate the chart's threshold to its ARL0.

    With ``prior`` the baseline is its siblings', ``prior_p0`` (:func:`_prior_baseline`), the false-alarm budget
    is the rule's ``arl0`` (the scope's traffic is not known yet), and the scope keeps counting
    its own calm windows until it has a warm-up of its own (:func:`_own_baseline_due`).
    """
    if prior is None:
        p0 = _round_sig(_baseline(rule, st["wx"], st["wn"]))
        st.pop("eb", None)
        if rule.pool_under:
            st["learned"] = [st["wx"], st["wn"]]     # for the parent's pool (the engine takes it)
    else:
        p0 = prior_p0
        st["eb"] = {"mean": prior.mean, "strength": prior.strength, "siblings": prior.siblings}
    main, more = bank(rule, p0, chart_arl0(rule, trials_per_day))
    st.pop("a", None)
    st.pop("b", None)
    st.update(phase="armed", hist=[], **main)
    if more:
        st["bank"] = more
    else:
        st.pop("bank", None)


def _prior_baseline(rule: Rule, prior: BetaPrior) -> float | None:
    """The baseline a scope with no warm-up of its own is armed with: the rate 99.9% of its
    siblings stay under (the prior's quantile, floored), or None where that is not below the
    cap (siblings too spread out to say more than the provisional chart already does).

    A scope whose own normal rate lies above its chart's reference (about 1.8 x p0 for a 3x
    chart) pages, sooner or later, before it has learned its own baseline; that is a scope
    the prior misjudged, not an incident. At the 95% quantile one new bulk campaign of a
    6-hour tuning run did (2.2% hard bounces at Yahoo against siblings at ~0.7%); at 99.9%
    fewer than one scope in a thousand drawn as its siblings are is misjudged.

    The scope's own first messages are left out on purpose: a new campaign's first send to a
    stale list would lift the very baseline it is to be judged against."""
    p0 = _round_sig(max(prior.upper(0, 0, PRIOR_CONFIDENCE), rule.baseline_floor))
    return p0 if rule.baseline_cap is None or p0 < rule.baseline_cap else None


def _own_baseline_due(rule: Rule, st: dict, x: int, n: int) -> bool:
    """Count a calm judged window of a scope armed on a prior; True once it has its own warm-up
    and no chart holds evidence (each below half its threshold), so the baseline can be
    learned from the scope itself without swallowing an incident that is building."""
    return _warm(rule, st, x, n) and all(c["s"] < c["h"] / 2 for c in charts(st))


def _chart_finding(rule: Rule, chart: dict, sid: str, w: float, x: int, n: int, *, fire: bool, calm: bool,
                   statistic: float, incident_events: int, detected_at: float | None = None) -> Finding:
    extra = {"p1": chart["p1"], "arl0": chart.get("arl0", rule.arl0), "incident_events": incident_events}
    if "chart_arl0" in chart and chart["chart_arl0"] != extra["arl0"]:
        extra["chart_arl0"] = chart["chart_arl0"]   # one chart of a bank
    if detected_at is not None:
        extra["sequential"] = True
    return Finding(rule, sid, w, x, n, fire=fire, calm=calm, statistic=statistic, baseline=chart["p0"],
                   threshold=chart["h"], detected_at=detected_at, extra=extra)


def close_cusum(rule: Rule, st: dict, sid: str, w: float, x: int, n: int, sends: int,
                window: float = 300.0, prior: BetaPrior | None = None) -> Finding | None:
    """Window close of a CUSUM rule: warm up, or judge whether the window was calm.

    The chart itself moves message by message as deltas arrive (:func:`cusum_sequence`);
    during warm-up the window's counts (pooled while thin) build the baseline, and once an
    alarm fired the window only says whether the incident is over (rate below the chart's
    reference). Thin windows are pooled for that judgement too. ``prior``: the scope's siblings'
    (:mod:`detector.shrinkage`), which arms a scope still warming up at once, unless the scope
    paged before (it then learns its own baseline) or the siblings are too spread out.
    """
    chart = st
    if st["phase"] == "warmup":
        st.setdefault("w0", w)
        pooled = pool(rule, st, x, n, sends)
        if pooled is not None and _warm(rule, st, *pooled):
            elapsed = w + window - st["w0"]
            _arm_cusum(rule, st, st["wn"] * 86400.0 / elapsed if elapsed > 0 else None)
        elif prior is not None and not st.get("own_only"):
            p0 = _prior_baseline(rule, prior)
            if p0 is not None:
                _arm_cusum(rule, st, None, prior=prior, prior_p0=p0)
        if not st["firing"] or "pre" not in st:
            return None
        chart = st["pre"]  # an alarm of the provisional chart resolves against its own reference
    judged = pool(rule, st, x, n, sends, prefix="c")
    if judged is None:
        return None
    jx, jn = judged
    if "eb" in st and not st["firing"] and _own_baseline_due(rule, st, jx, jn):
        elapsed = w + window - st.get("w0", w)
        _arm_cusum(rule, st, st["wn"] * 86400.0 / elapsed if elapsed > 0 else None)
        chart = st
    a, b = cusum.llr_weights(chart["p0"], chart["p1"])
    return _chart_finding(rule, chart, sid, w, jx, jn, fire=False, calm=jn > 0 and jx / jn < b / (a + b),
                          statistic=chart["s"], incident_events=chart["run_x"])


def provisional_chart(rule: Rule, st: dict) -> dict | None:
    """The chart a scope runs while it learns its baseline: p0 = ``baseline_cap``.

    The cap is the rate the rule never accepts as normal (a learned baseline is clamped to
    it), so testing against it before anything is learned adds no new false alarms, and a
    campaign whose very first send goes to a stale list is caught during that send instead
    of after its warm-up has swallowed the incident.

    Its alternatives are the incident rates an armed chart at the floor looks for (each
    shift x ``baseline_floor``, or ``p1``) that lie above the cap; only where none does, the
    shifts multiply the cap. Multiplying the cap would aim a chart at 50% refusals for a 5%
    cap: blind to the 20% block of a scope still warming up.
    """
    if rule.baseline_cap is None:
        return None
    pre = st.get("pre")
    if pre is None:
        cap = rule.baseline_cap
        wanted = [rule.p1] if rule.p1 is not None else [rule.baseline_floor * s for s in (rule.shift, *rule.bank)]
        pre, more = bank(rule, cap, rule.arl0, [r for r in wanted if cap < r < 1] or None)
        if more:
            pre["bank"] = more
        st["pre"] = pre
    return pre


def charts(chart: dict) -> list[dict]:
    """A chart and the rest of its bank (:func:`bank`)."""
    more = chart.get("bank")
    return [chart, *more] if more else [chart]


def sequential_finding(rule: Rule, chart: dict, sid: str, w: float,
                       crossing: tuple[float, int, int, float]) -> Finding:
    """The alarm of a chart that crossed its threshold mid-window."""
    at, run_x, run_n, s = crossing
    return _chart_finding(rule, chart, sid, w, run_x, run_n, fire=True, calm=False, statistic=s,
                          incident_events=run_x, detected_at=at)


def slot_roles(metric_name: str) -> tuple[list[bool], list[bool]]:
    """For each counter slot of a sequence mark: does the event count in x, and in n, of the metric?"""
    metric = METRICS[metric_name]
    in_x, in_n = [], []
    for slot, name in enumerate(COUNTERS):
        names = {name, "bounced"} if name.startswith("bounced_") else {name}
        in_x.append(bool(names & set(metric.numerator)))
        in_n.append(bool(names & set(metric.denominator)) or (metric.first_attempt_basis and in_x[-1]))
    return in_x, in_n


def cusum_sequence(rule: Rule, st: dict, seq: list, roles: tuple[list[bool], list[bool]],
                   delivered_counts: bool) -> list[tuple[float, int, int, float]]:
    """Advance a chart message by message over one window's sequence from one batch.

    ``seq`` is ``[n, position, slot, timestamp, ...]`` (see :class:`~detector.counts.ScopeDelta`):
    ``n`` events, of which the triples mark the non-deliveries; the unmarked positions are
    deliveries, which only pull the statistic down, so a run of them is one subtraction
    (floored at zero). This is Page's CUSUM exactly as its threshold was calibrated (one
    update per message), and it can cross in the middle of a window, minutes before the
    window closes. Returns the crossings as (time, incident events, trials, statistic);
    time is the newest event time seen up to the crossing.
    """
    a = st.get("a")
    if a is None:  # cached on the chart: this runs once per scope and batch
        a, b = cusum.llr_weights(st["p0"], st["p1"])
        st["a"], st["b"] = a, b
    else:
        b = st["b"]
    bd = b if delivered_counts else 0.0
    s, h = st["s"], st["h"]
    run_x, run_n = st["run_x"], st.get("run_n", 0)
    n_events = seq[0]
    if len(seq) == 1:  # the common case: deliveries only
        s -= n_events * bd
        if s <= 0.0:
            st["s"], st["run_x"], st["run_n"] = 0.0, 0, 0
        else:
            st["s"], st["run_n"] = s, run_n + (n_events if delivered_counts else 0)
        return []
    in_x, in_n = roles
    up = a + b
    crossings = []
    newest = -math.inf
    prev = -1
    marks = iter(seq)
    next(marks)
    end = ((n_events, None, None),)  # the deliveries after the last mark, then stop
    for pos, slot, ts in chain(zip(marks, marks, marks), end):
        d = pos - prev - 1
        prev = pos
        if d and bd:
            s -= d * bd
            if s <= 0.0:
                s, run_x, run_n = 0.0, 0, 0
            else:
                run_n += d
        if slot is None:
            break
        if ts > newest:
            newest = ts
        ix, inn = in_x[slot], in_n[slot]
        if not (ix or inn):
            continue
        s += up * ix - b * inn
        if s <= 0.0:
            s, run_x, run_n = 0.0, 0, 0
            continue
        run_x += ix
        run_n += inn
        if s >= h:
            crossings.append((newest, run_x, run_n, s))
            s, run_x, run_n = 0.0, 0, 0
    st["s"], st["run_x"], st["run_n"] = s, run_x, run_n
    return crossings


def eval_window(rule: Rule, st: dict, sid: str, w: float, x: int, n: int) -> Finding | None:
    """Exact binomial / beta-binomial upper-tail p-value of the span against the baseline."""
    if st["phase"] == "warmup":
        if not _warm(rule, st, x, n):
            return None
        p0 = _baseline(rule, st["wx"], st["wn"])
        rho = 0.0
        if rule.test == "betabinomial" and len(st["hist"]) >= 3:
            h = np.asarray(st["hist"], dtype=float)
            rho = float(window_test.estimate_rho(h[:, 0], h[:, 1]))
        st.update(phase="armed", p0=p0, rho=rho, hist=[])
        return None
    xs, ns = _span(rule, st, x, n)
    if ns < max(1, rule.min_volume):
        return None
    if rule.test == "betabinomial" and st["rho"] > 0:
        p = float(window_test.betabinom_pvalue(xs, ns, st["p0"], st["rho"]))
    else:
        p = float(window_test.binomial_pvalue(xs, ns, st["p0"]))
    return Finding(rule, sid, w, xs, ns, p_value=p, baseline=st["p0"], threshold=rule.q,
                   extra={"rho": st["rho"], "min_effect": rule.min_effect})


def eval_policy(rule: Rule, st: dict, sid: str, w: float, x: int, n: int, window: float = 300.0,
                learned_lag: Mapping | None = None) -> Finding | None:
    """Fire when the one-sided lower confidence bound of the span's rate exceeds the policy rate.

    With a ``lag`` (complaints), the span's complaints are judged against its exposure
    (:mod:`detector.exposure`) with exact Poisson bounds, not against its deliveries.
    ``learned_lag``: the lag fitted on the stream (:func:`detector.lag.summarise`), which
    replaces the rule's prior unless the rule says ``lag: {learn: false}``."""
    if rule.lag_median:
        def retire(old: list) -> None:  # a window left the span: its deliveries still draw complaints
            _retire(rule, st, old, w, window)
        xs, ns = _span(rule, st, x, n, [x, n, w], retire)
        e = _exposure(rule, st, st["recent"], w, window, ns, learned_lag)
        st["exposure"] = e
        return _policy_finding(rule, sid, w, xs, ns, e, learned_lag, (st, st["recent"], window))
    xs, ns = _span(rule, st, x, n)
    return _policy_finding(rule, sid, w, xs, ns, None)


def _lags(rule: Rule, learned_lag: Mapping | None) -> tuple[float, float, float, float]:
    """(slow median, its sigma, fast median, its sigma) of the exposure: the rule's prior, or
    the learned lag. The prior is a box [fastest, median] around the lag; a fit narrows it,
    never widens it."""
    if not (learned_lag and rule.lag_learn):
        return rule.lag_median, rule.lag_sigma, rule.lag_fastest, rule.lag_sigma
    fast, fast_sigma = learned_lag["fast"]
    slow, slow_sigma = learned_lag["slow"]
    if rule.lag_fastest and fast < rule.lag_fastest:
        fast, fast_sigma = rule.lag_fastest, rule.lag_sigma
    if slow > rule.lag_median:
        slow, slow_sigma = rule.lag_median, rule.lag_sigma
    return slow, slow_sigma, fast, fast_sigma


def _exposure(rule: Rule, st: dict, recent: list, w: float, window: float, ns: int,
              learned_lag: Mapping | None) -> float:
    """The span's exposure: its own deliveries under the fast end of the lag, those that left
    the span under the slow end (see :func:`_lags`)."""
    slow, slow_sigma, fast, fast_sigma = _lags(rule, learned_lag)
    return exposure.exposure(st, recent, w + window, rule.span_windows * window, slow, slow_sigma, fast, window,
                             span_n=ns, fastest_sigma=fast_sigma)


def subspans(rule: Rule) -> list[int]:
    """The spans, in windows, a lagged policy rule judges: its ``span``, and with ``min_span``
    the span halved while at least ``min_span``. A complaint spike that started an hour ago is
    diluted by the 23 calm hours before it in a 24-hour span; in its own sub-span it is not."""
    out, k = [rule.span_windows], rule.span_windows // 2
    while rule.min_span_windows and k >= rule.min_span_windows:
        out.append(k)
        k //= 2
    return out


def _subspan_bounds(rule: Rule, st: dict, recent: list, w: float, window: float, learned_lag: Mapping | None,
                    alpha: float) -> tuple[float, int, float, int] | None:
    """The sub-span (shorter than the span) whose lower bound is highest: (lower, complaints,
    exposure, windows); None when no sub-span has the volume and the rate to be judged.

    A sub-span's exposure counts its own deliveries under the fast end of the lag (the most
    complaints they can have sent by now), and each delivery before it for the largest share
    of its complaints that any lag in the box [fast end, slow end] sends into the sub-span: a
    send an hour before a 45-minute sub-span sends it most of its complaints under a 1-hour lag
    and almost none under a 6-hour one, so neither end alone is the conservative one."""
    if not any(r[0] for r in recent[-rule.min_span_windows:]):
        return None          # no complaint in the shortest sub-span: no sub-span can newly fire
    slow, slow_sigma, fast, fast_sigma = _lags(rule, learned_lag)
    span_end = w + window
    rec = np.array([(r[0], r[1], r[2]) for r in recent if r[0] or r[1]], dtype=float).reshape(-1, 3)
    old = st.get("old") or {}
    olds = np.array([(0.0, n, float(k) + 1800.0 - window / 2) for k, n in old.items() if n],
                    dtype=float).reshape(-1, 3)
    x, n, age = rec[:, 0], rec[:, 1], span_end - rec[:, 2] - window / 2
    before_n = np.concatenate([n, olds[:, 1]])
    before_age = np.concatenate([age, span_end - olds[:, 2] - window / 2])
    own = exposure.lag_cdf_array(age, fast, fast_sigma) if fast else np.ones_like(age)
    lo, hi = (fast or slow), max(fast or slow, slow)
    medians = np.exp(np.linspace(math.log(lo), math.log(hi), 9)) if hi > lo else np.array([lo])
    sigmas = np.where(medians <= fast, fast_sigma, slow_sigma) if fast else np.full(len(medians), slow_sigma)
    best = None
    for k in subspans(rule)[1:]:
        sub_s = k * window
        inside = rec[:, 2] >= span_end - sub_s
        xs = int(x[inside].sum())
        if not xs:
            continue
        outside = np.concatenate([~inside, np.ones(len(olds), dtype=bool)])
        t = before_age[outside][None, :]
        shares = (exposure.lag_cdf_array(t, medians[:, None], sigmas[:, None])
                  - exposure.lag_cdf_array(t - sub_s, medians[:, None], sigmas[:, None])).max(axis=0)
        e = float((own[inside] * n[inside]).sum() + (before_n[outside] * shares).sum())
        if e < max(1, rule.min_volume) or xs / e <= rule.rate:
            continue
        lower = float(policy.poisson_rate_lower(xs, e, alpha))
        if best is None or lower > best[0]:
            best = (lower, xs, e, k)
    return best


def peek_policy(rule: Rule, st: dict, sid: str, w: float, pending: list[list], window: float = 300.0,
                learned_lag: Mapping | None = None) -> Finding | None:
    """:func:`eval_policy` as if the still-open windows ``pending`` (``[x, n, start]``, oldest
    first, the last one starting at ``w``) had closed now, without changing ``st``.

    A policy line is crossed when evidence arrives, not when the allowed lateness has run out:
    the engine looks at each window as soon as it ends (``Engine.advance``), so a complaint
    spike pages up to ``allowed_lateness`` sooner; the window's own close, with any late events,
    still decides everything else (calm windows, resolution)."""
    recent = list(st.get("recent", ())) + pending
    dropped, recent = recent[:-rule.span_windows], recent[-rule.span_windows:]
    xs, ns = sum([r[0] for r in recent]), sum([r[1] for r in recent])
    if not rule.lag_median:
        return _policy_finding(rule, sid, w, xs, ns, None)
    held = {"old": dict(st.get("old") or {})}
    for old in dropped:
        _retire(rule, held, old, w, window)
    e = _exposure(rule, held, recent, w, window, ns, learned_lag)
    return _policy_finding(rule, sid, w, xs, ns, e, learned_lag, (held, recent, window))


def _retire(rule: Rule, st: dict, old: list, w: float, window: float) -> None:
    """A span entry left the span: keep its deliveries for their late complaints (entries of
    an older version carry no window start: the span's start stands in)."""
    exposure.retire(st, old[2] if len(old) > 2 else w - rule.span_windows * window, old[1])


def _policy_finding(rule: Rule, sid: str, w: float, xs: int, ns: int, e: float | None,
                    learned_lag: Mapping | None = None, span: tuple | None = None) -> Finding | None:
    """The policy decision on a span's counts; ``e``: its exposure (lagged rules), else None."""
    if not rule.lag_learn:
        learned_lag = None
    if e is None:
        if ns < max(1, rule.min_volume):
            return None
        if xs / ns <= rule.rate:
            lower = None  # the lower bound never exceeds the point estimate: no need to compute it
        elif rule.method == "wilson":
            lower = float(policy.wilson_lower(xs, ns, rule.alpha))
        else:
            lower = float(policy.clopper_pearson_lower(xs, ns, rule.alpha))
        fire = lower is not None and lower > rule.rate
        return Finding(rule, sid, w, xs, ns, fire=fire, calm=(not fire and xs / ns < rule.rate),
                       statistic=lower, baseline=None, threshold=rule.rate, extra={"lower_bound": lower})
    n_spans = len(subspans(rule)) if span is not None else 1
    alpha = rule.alpha / n_spans    # Bonferroni over the span and its sub-spans
    sub = None
    if span is not None and n_spans > 1:
        held, recent, window = span
        sub = _subspan_bounds(rule, held, recent, w, window, learned_lag, alpha)
    if e < max(1, rule.min_volume) and sub is None:
        return None
    rate = xs / e if e >= max(1, rule.min_volume) else 0.0
    lower = float(policy.poisson_rate_lower(xs, e, alpha)) if rate > rule.rate else None
    fire = lower is not None and lower > rule.rate
    extra = {}
    if sub is not None and sub[0] > rule.rate and not fire:
        fire, lower = True, sub[0]
        extra = {"subspan_s": sub[3] * span[2], "subspan_complaints": sub[1], "subspan_exposure": round(sub[2], 1)}
    return Finding(rule, sid, w, xs, ns, fire=fire, calm=(not fire and rate < rule.rate), statistic=lower,
                   baseline=None, threshold=rule.rate,
                   extra={"lower_bound": lower, "exposure": round(e, 1), **extra,
                          **({"lag_median_s": rule.lag_median} if not learned_lag else
                             {"lag": "learned", "lag_fast_median_s": round(learned_lag["fast"][0], 1),
                              "lag_slow_median_s": round(learned_lag["slow"][0], 1)})})


def eval_drift(rule: Rule, st: dict, sid: str, w: float, x: int, n: int, window: float) -> Finding | None:
    """Once a UTC day: the day's rate against the trailing ``baseline_days`` (:mod:`detector.drift`)."""
    drift.add(st, x, n)
    if not drift.day_ends(w, window):
        return None
    judged = drift.judge(st, rule.baseline_days, rule.min_volume)
    if judged is None:
        drift.keep(st, rule.baseline_days, fired=False)
        return None
    dx, dn, p0, rho, p = judged
    fire = p < rule.alpha and dx / dn >= rule.min_effect * p0
    drift.keep(st, rule.baseline_days, fired=fire)
    day_start = math.floor(w / drift.DAY) * drift.DAY
    return Finding(rule, sid, w, dx, dn, fire=fire, calm=not fire, p_value=p, baseline=p0, threshold=rule.alpha,
                   extra={"rho": rho, "min_effect": rule.min_effect, "day_start": day_start,
                          "baseline_days": len(st.get("days", ()))})


def _volume_expected(rule: Rule, st: dict, w: float) -> float:
    if rule.seasonal and "season" in st:
        seasonal = float(volume.SeasonalBaseline.from_dict(st["season"]).expected(w))
        if math.isfinite(seasonal):  # NaN until the hour-of-week slot has data
            return seasonal
    mu = flow.expected(st["flow"], w)
    return mu if math.isfinite(mu) else 0.0


def _volume_learn(rule: Rule, st: dict, w: float, count: float, window: float) -> None:
    flow.learn(st["flow"], w, count, rule.ewma)
    if rule.seasonal:
        season = volume.SeasonalBaseline.from_dict(st["season"]) if "season" in st \
            else volume.SeasonalBaseline(window)
        season.update(w, count)
        st["season"] = season.to_dict()


def _volume_warmup(rule: Rule, st: dict, w: float, count: int, window: float) -> None:
    """Learn, and arm once the scope was steady: traffic in ``min_active`` of the warm-up windows.

    A bulk send is active for its send and its tail, then quiet: it never qualifies, so its end
    is not "silence" and its next send is not a "surge". An unsteady period starts the count over.
    """
    _volume_learn(rule, st, w, count, window)
    st["ww"] += 1
    st["active"] = st.get("active", 0) + (count > 0)
    if st["ww"] >= max(rule.warmup_windows, 1):
        if st["active"] >= rule.min_active * st["ww"]:
            st["phase"] = "armed"
        else:
            st["ww"] = st["active"] = 0


def _eval_surge(rule: Rule, st: dict, sid: str, w: float, count: int, window: float, per_window: float,
                k: float) -> Finding:
    """A windowed GLR scan over the last ``max_run`` windows (:mod:`detector.surge`).

    The windows of a candidate run are held back from the flow's profile until they leave the
    look-back without an alarm: a surge's first windows, not yet conclusive on their own (an
    onset mid-window, a 3x flow below ``min_volume``), would otherwise be learned as normal,
    raising the hour's mean and the overdispersion until the surge no longer looks surprising.
    Windows of a firing incident are never learned. While firing, each window is judged on its
    own for recovery: calm below the geometric midpoint of the usual rate and the floor.
    """
    held = st.setdefault("run", [])
    held.append([w, float(count), float(per_window)])
    max_run = max(rule.run_windows, 1)
    del held[:-max_run]
    firing = st["firing"]
    res = surge.scan([h[1] for h in held], [h[2] for h in held], k, factor=rule.factor, alpha=rule.alpha,
                     max_run=max_run, min_volume=rule.min_volume, min_expected=rule.min_expected)
    fire = res.fire and not firing
    calm = not res.fire and count < math.sqrt(rule.factor) * per_window
    out = max(0, len(held) - (max_run - 1))   # windows no later run can include
    if res.fire:
        held.clear()                           # the run is the incident: never learned
    elif out:
        if not firing:
            for hw, hc, _ in held[:out]:
                _volume_learn(rule, st, hw, hc, window)
        del held[:out]
    if res.windows:
        x, expected, p = res.count, res.expected, res.p_value
    else:
        x, expected, p = float(count), per_window, res.p_value
    return Finding(rule, sid, w, int(x), int(x), fire=fire, calm=calm, p_value=p, statistic=x / max(expected, 1e-9),
                   baseline=expected, threshold=res.threshold, expected=expected,
                   extra={"dispersion": k if math.isfinite(k) else None, "run_windows": res.windows,
                          "ratio": round(x / expected, 2) if expected > 0 else None, "factor": rule.factor,
                          "window_count": int(count), "window_expected": round(per_window, 2)})


def eval_volume(rule: Rule, st: dict, sid: str, w: float, count: int, window: float) -> Finding | None:
    """Volume surge (negative-binomial upper tail) or silence (a run of empty windows that the
    learned hour-of-day rate makes improbable, :mod:`detector.flow`)."""
    if "flow" not in st:
        st["flow"] = flow.new_profile()
    if st["phase"] == "warmup":
        _volume_warmup(rule, st, w, count, window)
        return None
    per_window = _volume_expected(rule, st, w)
    k = flow.dispersion(st["flow"])
    if rule.test == "surge":
        return _eval_surge(rule, st, sid, w, count, window, per_window, k)
    expected = per_window
    held = st.setdefault("held", [])
    llr = st.get("run_llr", 0.0) + flow.trickle_llr(count, per_window, k, rule.trickle)
    if llr > 0.0:
        # extend the run of (near-)silent windows; learn them only if it ends without an alarm
        st["run_llr"] = llr
        st["run_mu"] = run_mu = st.get("run_mu", 0.0) + per_window
        st["run_x"] = run_x = st.get("run_x", 0) + count
        held.append([w, count])
    else:
        if held and not st["firing"]:
            for hw in held:
                _volume_learn(rule, st, *(hw if isinstance(hw, list) else (hw, 0)), window)
        st["run_llr"], st["run_mu"], st["run_x"], st["held"] = 0.0, 0.0, 0, []
        run_mu = run_x = 0
    p = math.exp(-llr) if llr > 0.0 else 1.0
    fire = llr > 0.0 and run_mu - run_x >= rule.min_expected and p < rule.alpha
    calm = count > 0 and count >= 0.5 * per_window  # recovered, not a trickle of retries
    if fire:  # the chart restarts after its alarm, so the flow's return is judged afresh
        st["held"], st["run_llr"], st["run_mu"], st["run_x"] = [], 0.0, 0.0, 0
        expected = run_mu
    if llr <= 0.0 and not st["firing"]:
        _volume_learn(rule, st, w, count, window)
    return Finding(rule, sid, w, count, count, fire=fire, calm=calm, p_value=p, statistic=float(count),
                   baseline=expected, threshold=rule.alpha, expected=expected,
                   extra={"dispersion": k if math.isfinite(k) else None,
                          **({"run_messages": run_x} if fire and run_x else {})})


def decide_round(findings: list[Finding]) -> None:
    """Benjamini-Hochberg across all scopes one window-test rule evaluated in one round."""
    if not findings:
        return
    q = findings[0].rule.q
    reject = window_test.benjamini_hochberg(np.array([f.p_value for f in findings]), q)
    for f, r in zip(findings, reject):
        big_enough = f.n > 0 and f.x / f.n >= f.rule.min_effect * f.baseline
        f.fire = bool(r) and big_enough
        f.calm = not f.fire
