"""Deliverability rates of the top-N campaigns by volume, without label explosion.

A campaign id is an unbounded label value: one series per campaign would grow the TSDB
without limit. This collector keeps a fixed number of campaigns (a Space-Saving
heavy-hitters table, Metwally et al. 2005) over exponentially decayed counts, so memory
is O(capacity) however many campaigns pass, old campaigns fade out, and only the
``top_n`` heaviest are exported.

Space-Saving guarantee: with ``capacity`` slots, every campaign whose decayed volume
exceeds ``total / capacity`` is in the table. A campaign that enters by evicting the
smallest slot inherits that slot's count as an overestimate (``error``); ranking uses
``volume - error``, a lower bound, so a newcomer cannot leap into the top N on borrowed
volume. Its per-type counts start empty, so the ratios it reports are exact for what it
has seen since entering.

Ratios (the same definitions as the Prometheus recording rules):
- bounce ratio = bounced / (delivered + bounced): share of final outcomes that bounced;
  it works for ESPs that send no ``accepted`` event.
- complaint ratio = complained / delivered: mailbox providers measure complaints against
  mail delivered (Yahoo: "based on mail delivered to the inbox").
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from detector.event import EVENT_TYPES

PREFIX = "ddetect_campaign"
DEFAULT_TOP_N = 20
# Renormalise the inflated counters long before float64 loses precision (2**1023).
_MAX_GROWTH_EXPONENT = 60.0


@dataclass
class _Slot:
    volume: float = 0.0      # inflated decayed event count (Space-Saving counter)
    error: float = 0.0       # inflated overestimate inherited at entry
    counts: dict[str, float] = field(default_factory=dict)  # inflated, per event type


@dataclass(frozen=True)
class CampaignRates:
    """One exported campaign: decayed counts (events, as of now) and its ratios."""

    campaign: str
    label: str
    volume: float
    error: float
    counts: dict[str, float]
    bounce_ratio: float | None
    complaint_ratio: float | None


def bounce_ratio(counts: Mapping[str, float]) -> float | None:
    denominator = counts.get("delivered", 0.0) + counts.get("bounced", 0.0)
    return counts.get("bounced", 0.0) / denominator if denominator > 0 else None


def complaint_ratio(counts: Mapping[str, float]) -> float | None:
    delivered = counts.get("delivered", 0.0)
    return counts.get("complained", 0.0) / delivered if delivered > 0 else None


def label_value(campaign: str, max_chars: int) -> str:
    """Bound the label length; a hash suffix keeps truncated ids distinct."""
    if len(campaign) <= max_chars:
        return campaign
    digest = hashlib.sha256(campaign.encode("utf-8")).hexdigest()[:8]
    return campaign[: max_chars - 9] + "~" + digest


class CampaignRatesCollector(Collector):
    """Top-N campaigns by decayed event volume, exported as gauges.

    ``capacity`` (default ``5 * top_n``) is the number of campaigns held; a larger table
    makes the top N more accurate. ``half_life_seconds=None`` disables decay (lifetime
    counts). ``clock`` is injectable so tests are deterministic.
    """

    def __init__(self, top_n: int = DEFAULT_TOP_N, *, capacity: int | None = None,
                 half_life_seconds: float | None = 3600.0,
                 clock: Callable[[], float] = time.monotonic,
                 max_label_chars: int = 128,
                 registry: CollectorRegistry | None = None):
        if not isinstance(top_n, int) or top_n < 1:
            raise ValueError(f"top_n must be a positive integer, got {top_n!r}")
        capacity = 5 * top_n if capacity is None else capacity
        if not isinstance(capacity, int) or capacity < top_n:
            raise ValueError(f"capacity must be an integer >= top_n ({top_n}), got {capacity!r}")
        if half_life_seconds is not None and not half_life_seconds > 0:
            raise ValueError(f"half_life_seconds must be > 0 or None, got {half_life_seconds!r}")
        if max_label_chars < 16:
            raise ValueError("max_label_chars must be at least 16")
        self.top_n = top_n
        self.capacity = capacity
        self.half_life_seconds = half_life_seconds
        self._clock = clock
        self._max_label_chars = max_label_chars
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._origin = clock()
        self._evictions = 0
        if registry is not None:
            registry.register(self)

    # --- feeding -------------------------------------------------------------------
    def observe(self, campaign: str, counts: Mapping[str, int]) -> None:
        """Add event counts for one campaign, e.g. ``{"delivered": 98, "bounced": 2}``.

        Input is validated whole before anything changes, so a bad call raises
        ``ValueError`` and leaves the table as it was.
        """
        if not isinstance(campaign, str) or not campaign.strip():
            raise ValueError(f"campaign must be a non-empty string, got {campaign!r}")
        if not isinstance(counts, Mapping):
            raise ValueError(f"counts must be a mapping of event type to count, got {type(counts).__name__}")
        for etype, n in counts.items():
            if etype not in EVENT_TYPES:
                raise ValueError(f"unknown event type {etype!r} (allowed: {', '.join(EVENT_TYPES)})")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"count for {etype!r} must be a non-negative integer, got {n!r}")
        total = sum(counts.values())
        if total == 0:
            return
        with self._lock:
            growth = self._growth(self._clock())
            slot = self._slots.get(campaign)
            if slot is None:
                slot = self._admit(campaign)
            slot.volume += total * growth
            for etype, n in counts.items():
                if n:
                    slot.counts[etype] = slot.counts.get(etype, 0.0) + n * growth

    def _admit(self, campaign: str) -> _Slot:
        if len(self._slots) < self.capacity:
            slot = self._slots[campaign] = _Slot()
            return slot
        # Space-Saving: replace the smallest counter; the newcomer inherits its count.
        victim = min(self._slots, key=lambda c: (self._slots[c].volume, c))
        floor = self._slots.pop(victim).volume
        self._evictions += 1
        slot = self._slots[campaign] = _Slot(volume=floor, error=floor)
        return slot

    def _growth(self, now: float) -> float:
        """Weight of an observation made now, relative to the origin (forward decay).

        Adding ``n * growth`` and later dividing by the current growth equals decaying
        every past count by ``2 ** (-age / half_life)``, with O(1) work per observation.
        """
        if self.half_life_seconds is None:
            return 1.0
        exponent = (now - self._origin) / self.half_life_seconds
        if exponent > _MAX_GROWTH_EXPONENT:
            scale = 2.0 ** -exponent
            for slot in self._slots.values():
                slot.volume *= scale
                slot.error *= scale
                slot.counts = {k: v * scale for k, v in slot.counts.items()}
            self._origin = now
            exponent = 0.0
        return 2.0 ** max(exponent, 0.0)

    # --- reading -------------------------------------------------------------------
    def top(self) -> list[CampaignRates]:
        """The exported campaigns, heaviest first (by guaranteed volume)."""
        with self._lock:
            growth = self._growth(self._clock())
            ranked = sorted(self._slots.items(),
                            key=lambda item: (-(item[1].volume - item[1].error), item[0]))
            out = []
            for campaign, slot in ranked[: self.top_n]:
                counts = {k: v / growth for k, v in slot.counts.items()}
                out.append(CampaignRates(
                    campaign=campaign,
                    label=label_value(campaign, self._max_label_chars),
                    volume=slot.volume / growth,
                    error=slot.error / growth,
                    counts=counts,
                    bounce_ratio=bounce_ratio(counts),
                    complaint_ratio=complaint_ratio(counts),
                ))
            return out

    def tracked(self) -> int:
        with self._lock:
            return len(self._slots)

    def evictions(self) -> int:
        with self._lock:
            return self._evictions

    def _families(self) -> tuple[GaugeMetricFamily, ...]:
        decay = ("lifetime" if self.half_life_seconds is None
                 else f"decayed with a {self.half_life_seconds:g}s half-life")
        return (
            GaugeMetricFamily(f"{PREFIX}_events",
                              f"Event count per type of the top-{self.top_n} campaigns by volume ({decay}).",
                              labels=("campaign", "type")),
            GaugeMetricFamily(f"{PREFIX}_bounce_ratio",
                              "Bounced / (delivered + bounced) of the top campaigns by volume.",
                              labels=("campaign",)),
            GaugeMetricFamily(f"{PREFIX}_complaint_ratio",
                              "Complained / delivered of the top campaigns by volume.",
                              labels=("campaign",)),
            GaugeMetricFamily(f"{PREFIX}_tracker_campaigns",
                              "Campaigns held in the bounded heavy-hitters table."),
        )

    def describe(self) -> Iterator:
        yield from self._families()
        yield CounterMetricFamily(f"{PREFIX}_tracker_evictions",
                                  "Campaigns evicted from the heavy-hitters table.")

    def collect(self) -> Iterator:
        events, bounces, complaints, tracked = self._families()
        for row in self.top():
            for etype in EVENT_TYPES:
                if etype in row.counts:
                    events.add_metric((row.label, etype), row.counts[etype])
            if row.bounce_ratio is not None:
                bounces.add_metric((row.label,), row.bounce_ratio)
            if row.complaint_ratio is not None:
                complaints.add_metric((row.label,), row.complaint_ratio)
        tracked.add_metric((), self.tracked())
        yield from (events, bounces, complaints, tracked)
        yield CounterMetricFamily(f"{PREFIX}_tracker_evictions",
                                  "Campaigns evicted from the heavy-hitters table.",
                                  value=self.evictions())

