"""A time- and size-bounded set: redelivery filter and replay caches.

ESPs redeliver (SendGrid: "duplicate events are possible"; SNS retries reuse MessageId),
so recently produced event ids are remembered for ``window`` seconds, at most
``max_entries`` of them (oldest evicted first), so memory stays bounded whatever the
traffic. Insertion order is time order, so expiry only ever looks at the head.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from typing import Callable, Hashable


class ExpiringSet:
    def __init__(self, window_seconds: float, max_entries: int, clock: Callable[[], float] = time.monotonic):
        if window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        if max_entries <= 0:
            raise ValueError("max_entries must be > 0")
        self.window = float(window_seconds)
        self.max_entries = int(max_entries)
        self._clock = clock
        self._items: OrderedDict[Hashable, float] = OrderedDict()

    def _expire(self, now: float) -> None:
        items = self._items
        while items:
            key, added = next(iter(items.items()))
            if now - added < self.window:
                break
            items.popitem(last=False)

    def __contains__(self, key: Hashable) -> bool:
        self._expire(self._clock())
        return key in self._items

    def add(self, key: Hashable) -> None:
        now = self._clock()
        self._expire(now)
        self._items[key] = now
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def add_many(self, keys) -> None:
        """``add`` for a batch (one clock read and one expiry pass)."""
        now = self._clock()
        self._expire(now)
        items = self._items
        for key in keys:
            items[key] = now
            items.move_to_end(key)
        while len(items) > self.max_entries:
            items.popitem(last=False)

    def snapshot(self):
        """Expire now, then a read-only view for many membership tests in one step of
        the event loop (the view is live: do not hold it across an ``await``)."""
        self._expire(self._clock())
        return self._items.keys()

    def add_if_absent(self, key: Hashable) -> bool:
        """Atomically (single-threaded asyncio) add; False if it was already there."""
        if key in self:
            return False
        self.add(key)
        return True

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._items)
