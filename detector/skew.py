"""Which events are stamped implausibly far in the future (a wrong clock, a bad field).

The watermark follows the newest event time, so one event stamped a day ahead would make
the next day's on-time events late (dropped), and one stamped a year ahead would close a
year of windows. Such an event is an outlier when it is more than ``max_skew`` seconds
ahead of a reference that an outlier cannot move:

* with a wall clock (the worker): ``now``;
* without one (``ddetect replay``): both the engine's newest event time so far and the
  median of the events around it in arrival order (``context`` events either side). A
  single future event is surrounded by on-time events; after a real gap, where the whole
  stream moved ahead, the events around it moved too, so the gap is followed.

Events stamped in the past never move the watermark (it only moves forward) and are
left to the allowed lateness. Pure numpy, used by the pipeline and by replay alike.
"""
from __future__ import annotations

import numpy as np

#: Default plausible clock skew between an ESP's timestamps and ours (seconds).
DEFAULT_MAX_FUTURE_SKEW = 3600.0
#: Events either side of a suspect whose median stands for "the stream's time" in replay.
DEFAULT_CONTEXT = 100


def future_outliers(timestamps, max_skew: float = DEFAULT_MAX_FUTURE_SKEW, *, now: float | None = None,
                    newest: float | None = None, context: int = DEFAULT_CONTEXT) -> np.ndarray:
    """Boolean mask (same order as ``timestamps``) of the events too far ahead to count.

    ``now``: the wall clock; an event is an outlier when stamped more than ``max_skew``
    after it. Without ``now``: more than ``max_skew`` after ``newest`` (the newest event
    time already counted, None at the start) *and* after the median of the timestamps
    ``context`` positions either side of it (itself included).
    """
    ts = np.asarray(timestamps, dtype=np.float64)
    if ts.size == 0:
        return np.zeros(0, dtype=bool)
    if now is not None:
        return ts > now + max_skew
    # A median is never below the smallest timestamp, so only events beyond it need one.
    floor = float(ts.min()) if newest is None else max(float(newest), float(ts.min()))
    suspect = ts > floor + max_skew
    idx = np.flatnonzero(suspect)
    if idx.size == 0:
        return suspect
    padded = np.pad(ts, context, constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * context + 1)[idx]
    medians = np.nanmedian(windows, axis=1)
    out = np.zeros(ts.size, dtype=bool)
    out[idx] = ts[idx] > medians + max_skew
    return out
