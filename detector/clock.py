"""Event-time clock helpers of the engine: how far an empty stretch needs closing.

When no scope has data in a long run of windows (a pause in the input, two events a
year apart, one event stamped far in the future), closing those windows one by one costs
time and state proportional to the gap and tells the rules nothing they could not learn
from the first few: after ``empty_run_bound`` empty windows every rule has seen all the
emptiness it can act on (a silence fires in the first empty window, a firing rate alert
resolves after ``resolve.idle_windows``, a surge after ``resolve.windows`` calm ones, a
span of ``span`` windows has slid past its last data). The engine closes that many empty
windows after the newest window with data, then moves its clock straight to the next
window with data (or to the watermark). Which windows are closed depends only on where
the data is, not on how the stream was cut into batches or messages.
"""
from __future__ import annotations

import math
from typing import Iterator, Mapping

from .rules import RuleSet


def _wkey(start: float) -> str:
    return repr(float(start))  # as detector.engine.wkey (kept import-free of the engine)

#: Upper bound on the empty windows closed one by one after the data stops.
MAX_EMPTY_RUN = 1000


def empty_run_bound(ruleset: RuleSet) -> int:
    """Empty windows the rule set can still act on after the newest data, plus one; capped."""
    need = 1  # a silence fires in the first empty window
    for r in ruleset.rules:
        need = max(need, r.resolve_idle_windows, r.resolve_windows, r.span_windows)
    return min(need + 1, MAX_EMPTY_RUN)


def windows_to_close(states: Mapping[str, Mapping], start: float, until: float, window: float, bound: int,
                     closed_until: float | None) -> Iterator[float]:
    """The starts of the windows in [start, until) to close one by one, in order.

    A window is closed when a scope has data in it or when it is at most ``bound`` windows
    after the newest window with data; the others are skipped (the caller's clock moves
    past them). Lazy: the caller closes each window before the next is computed, so the
    data looked at is what the closes left. Short stretches (up to ``bound`` windows) are
    all closed without looking at the data, which keeps the common case (one window per
    advance) free of extra scans. ``closed_until`` stands for the window just closed, which
    counts as data: windows closed in earlier calls are not re-examined.
    """
    if until - start <= bound * window:
        while start < until:
            yield start
            start += window
        return
    last, nxt = _data_bounds(states, start)
    if closed_until is not None:
        last = max(last, closed_until - window)
    while start < until:
        if start > nxt:  # the data window was closed: find the next one
            done = nxt
            last, nxt = _data_bounds(states, start)
            last = max(last, done)
        if start != nxt and start > last + bound * window:
            start = min(until, nxt)  # nothing any rule can use until the next data: skip
            continue
        yield start
        start += window


def _data_bounds(states: Mapping[str, Mapping], start: float) -> tuple[float, float]:
    """(newest window start with data before ``start``, oldest open window with data at or after it).

    -inf / inf when there is none. One pass over the scopes and their open windows (a few
    per scope), so it costs about what closing one window costs.
    """
    last, nxt = -math.inf, math.inf
    for sid in list(states):
        st = states[sid]
        seen = st.get("last_seen")
        if seen is not None and last < seen < start:
            last = seen
        for key in st["windows"]:
            w = float(key)
            if start <= w < nxt:
                nxt = w
            elif last < w < start:
                last = w
    return last, nxt


def skip_window(states, meta, window: float) -> float | None:
    """After closing a window raised (a bug, a corrupt state): give that window up.

    Its counts and reasons are dropped from every scope and the clock moves past it, so
    the next advance goes on with the next window instead of failing on the same one for
    ever. Returns the skipped window's start (None when the clock has not started).
    """
    start = meta.get("closed_until")
    if start is None:
        start = meta.get("first_open")
    if start is None:
        return None
    key = _wkey(start)
    for sid in list(states):
        st = states[sid]
        if key in st["windows"] or key in st["reasons"]:
            st["windows"].pop(key, None)
            st["reasons"].pop(key, None)
            states[sid] = st
    meta["closed_until"] = start + window
    return start
