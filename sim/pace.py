"""Replay a simulated stream in (compressed) real time, for a live demo.

Events carry their *event* time; the pacing uses their *arrival* time (when the webhook
would reach the receiver), divided by ``speedup``: at 60x, a 3-hour simulation plays in
3 minutes, and late or duplicate deliveries show up out of order just as they would.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator


def paced(timed: Iterable[tuple[float, dict]], speedup: float = 60.0, *,
          clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
          max_batch: int = 500) -> Iterator[list[dict]]:
    """Yield lists of events whose (scaled) arrival time has come.

    ``timed`` is ``(arrival, event)`` pairs in arrival order (``EventTable.iter_timed()``).
    Batches group events due at the same moment (up to ``max_batch``), which is how ESPs
    post webhooks anyway and keeps the caller's per-request overhead low."""
    if speedup <= 0:
        raise ValueError(f"speedup must be positive, got {speedup}")
    origin_sim = origin_wall = None
    batch: list[dict] = []
    for arrival, event in timed:
        if origin_sim is None:
            origin_sim, origin_wall = arrival, clock()
        due = origin_wall + (arrival - origin_sim) / speedup
        wait = due - clock()
        if (wait > 0 or len(batch) >= max_batch) and batch:
            yield batch
            batch = []
            wait = due - clock()
        if wait > 0:
            sleep(wait)
        batch.append(event)
    if batch:
        yield batch
