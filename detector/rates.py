"""Deliverability metrics as (events, trials) pairs read off a window's counters.

A rate is only meaningful with its denominator: 3 bounces out of 10 and 300 out of
1,000 are the same 30% but very different evidence, so every test takes both.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .counts import COUNTER_INDEX
from .event import EVENT_TYPES


@dataclass(frozen=True)
class Metric:
    name: str
    numerator: tuple[str, ...]
    denominator: tuple[str, ...]   # empty for a volume (count) metric
    description: str
    #: The denominator is the scope's sends: accepted events, or delivery attempts where the
    #: stream has none (the engine substitutes :func:`detector.sends.sends`).
    per_send: bool = False

    @property
    def is_volume(self) -> bool:
        return not self.denominator

    @property
    def is_send_volume(self) -> bool:
        """Counts sends, which a stream without send events measures by its delivery attempts
        (:mod:`detector.sends`)."""
        return self.numerator in (("accepted",), ("unattributed_accepted",)) and not self.denominator

    @property
    def first_attempt_basis(self) -> bool:
        """Are its trials each message's first attempt (:data:`~detector.counts.FIRST_ATTEMPT_BASIS`)?"""
        return self.denominator == ("attempt_trials",)

    @property
    def sequenceable(self) -> bool:
        """Can a CUSUM chart it message by message? Only if each term is an event type (or a
        bounce class), so every event says by itself whether it counts, or if it counts
        refusals among first attempts, which the batch marks per event."""
        if self.first_attempt_basis:
            return self.numerator == ("refused",)
        return not self.per_send and all(c in EVENT_TYPES or c.startswith("bounced_")
                                         for c in self.numerator + self.denominator)

    def pair(self, counts: np.ndarray) -> tuple[int, int]:
        """(x, n) of this metric for one window's counter vector."""
        x = int(sum(counts[COUNTER_INDEX[c]] for c in self.numerator))
        n = int(sum(counts[COUNTER_INDEX[c]] for c in self.denominator)) if self.denominator else x
        return x, n


_ATTEMPTS = ("delivered", "bounced")
METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("bounce_rate", ("bounced",), _ATTEMPTS, "bounced / (delivered + bounced)"),
    Metric("hard_bounce_rate", ("bounced_hard",), _ATTEMPTS, "hard bounces / (delivered + bounced)"),
    Metric("block_rate", ("bounced_block",), _ATTEMPTS, "block bounces / (delivered + bounced)"),
    Metric("refusal_rate", ("refused",), ("attempt_trials",),
           "first attempts the provider refused (a block bounce, or a deferral with its throttling or blocking "
           "reply) / first attempts: a block seen at the first attempt, not when the retries end"),
    Metric("soft_bounce_rate", ("bounced_soft",), _ATTEMPTS, "soft bounces / (delivered + bounced)"),
    Metric("complaint_rate", ("complained_fbl",), ("delivered_fbl",),
           "complaints / delivered, at mailbox providers that run a per-message feedback loop "
           "(detector/feedback_loops.py: Gmail and Apple send none)"),
    Metric("complaint_rate_all", ("complained",), ("delivered",),
           "complaints / all deliveries (reads low by the share of mail to providers without a feedback loop)"),
    Metric("deferral_rate", ("deferred",), ("delivered", "bounced", "deferred"),
           "deferrals / (delivered + bounced + deferred)"),
    Metric("drop_rate", ("dropped",), ("delivered", "bounced", "dropped"), "drops / (delivered + bounced + dropped)"),
    Metric("throttle_rate", ("throttled",), ("accepted",),
           "first attempts deferred with a throttling or blocking reply / messages sent", per_send=True),
    Metric("unsubscribe_rate", ("unsubscribed",), ("delivered",), "unsubscribes / delivered"),
    Metric("volume", ("accepted",), (), "messages sent per window: accepted by the ESP, or delivery attempts where "
           "the stream has no send events"),
    Metric("unattributed_volume", ("unattributed_accepted",), (),
           "messages sent per window that name no campaign (volume no campaign's send explains)"),
    Metric("delivery_volume", ("delivered", "bounced"), (), "delivery attempts per window"),
)}
