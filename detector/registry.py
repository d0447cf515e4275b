"""The statistical tests a rule can name, in one table.

The rule loader reads it for the names, the metrics each test takes and the keys that apply
to it; the engine for how a window close evaluates it and whether it charts message by
message; the partitioner for whether its scopes are decided together (Benjamini-Hochberg
across every scope of the rule in a round, so they must share a partition). A new test is
one entry here and its functions in ``detector/``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from . import detectors
from .shrinkage import BetaPrior


@dataclass(frozen=True)
class CloseContext:
    """What a window close knows besides the rule, its state and the window's numbers."""
    window: float = 300.0
    learned_lag: Mapping | None = None     # the partition's fitted complaint lags (policy)
    prior: BetaPrior | None = None         # the scope's siblings' prior (cusum with pool_under)


#: close(rule, state, scope id, window start, x, n, sends, context) -> Finding | None
Close = Callable[..., "detectors.Finding | None"]


@dataclass(frozen=True)
class StatTest:
    name: str
    measures: str              # "rate" or "volume": the kind of metric it takes
    close: Close
    keys: tuple[str, ...]      # rule-file keys that apply only to some tests and apply to this one
    in_rounds: bool = False    # p-values decided together across scopes (one partition per rule scope)
    sequential: bool = False   # charted message by message as deltas arrive, not only at closes
    relearns: bool = False     # its baseline is frozen when learned, and learned again after an incident
    summary: str = ""


def _cusum(rule, st, sid, w, x, n, sent, ctx: CloseContext):
    return detectors.close_cusum(rule, st, sid, w, x, n, sent, ctx.window, prior=ctx.prior)


def _window(rule, st, sid, w, x, n, sent, ctx: CloseContext):
    pooled = detectors.pool(rule, st, x, n, sent)
    return None if pooled is None else detectors.eval_window(rule, st, sid, w, *pooled)


def _policy(rule, st, sid, w, x, n, sent, ctx: CloseContext):
    return detectors.eval_policy(rule, st, sid, w, x, n, window=ctx.window, learned_lag=ctx.learned_lag)


def _drift(rule, st, sid, w, x, n, sent, ctx: CloseContext):
    return detectors.eval_drift(rule, st, sid, w, x, n, ctx.window)


def _volume(rule, st, sid, w, x, n, sent, ctx: CloseContext):
    return detectors.eval_volume(rule, st, sid, w, x, ctx.window)


_BASELINE = ("baseline_floor", "baseline_cap")
_WINDOW_TEST = ("min_sends", *_BASELINE, "q", "span", "min_effect")
_LEVEL = ("seasonal", "min_expected", "ewma", "min_active")

STAT_TESTS: dict[str, StatTest] = {t.name: t for t in (
    StatTest("cusum", "rate", _cusum, ("min_sends", "shift", "p1", "arl0", "false_alarms_per_scope_day",
                                       *_BASELINE, "pool_under"),
             sequential=True, relearns=True, summary="Page's Bernoulli CUSUM, one update per message (cusum.py)"),
    StatTest("binomial", "rate", _window, _WINDOW_TEST, in_rounds=True,
             summary="exact binomial upper tail of the span, Benjamini-Hochberg per round (window_test.py)"),
    StatTest("betabinomial", "rate", _window, _WINDOW_TEST, in_rounds=True,
             summary="beta-binomial upper tail with the scope's overdispersion, BH per round (window_test.py)"),
    StatTest("policy", "rate", _policy, ("span", "min_span", "rate", "alpha", "method", "lag"),
             summary="lower confidence bound of the span's rate above a policy line (policy.py)"),
    StatTest("drift", "rate", _drift, ("min_effect", "alpha", "baseline_days"),
             summary="the day's rate against the trailing weeks (drift.py)"),
    StatTest("surge", "volume", _volume, ("span", "max_run", "alpha", "factor", *_LEVEL),
             summary="window volume above its expected level, negative-binomial tail (surge.py)"),
    StatTest("silence", "volume", _volume, ("alpha", *_LEVEL, "trickle"),
             summary="a steady flow fell to nothing or a trickle, CUSUM of window LLRs (flow.py)"),
)}


def applicable_tests(key: str) -> tuple[str, ...]:
    """The tests a rule-file key applies to (in table order)."""
    return tuple(name for name, t in STAT_TESTS.items() if key in t.keys)
