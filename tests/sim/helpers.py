"""Shared helpers for the simulator tests: cached runs and a per-message view of a stream."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

from sim import simulate

HOUR = 3600.0
START = 1717488000.0  # 2024-06-04 08:00 UTC


@functools.lru_cache(maxsize=None)
def run(scenario: str, seed: int = 7, duration: float = 6 * HOUR, scale: float = 0.2):
    """Cached simulate(): several tests read the same run."""
    return simulate(scenario, seed=seed, start=START, duration=duration, scale=scale)


@dataclass
class Message:
    campaign: str
    sending_domain: str | None
    ip_pool: str | None
    mailbox_provider: str
    accepted: float | None = None
    final: str | None = None           # delivered | bounced | dropped
    final_ts: float | None = None
    bounce_class: str | None = None
    types: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)


def messages(events) -> dict[str, Message]:
    """Group a stream by message_id (duplicate deliveries removed by event_id)."""
    seen: set[str] = set()
    out: dict[str, Message] = {}
    for ev in events:
        if ev["event_id"] in seen:
            continue
        seen.add(ev["event_id"])
        msg = out.get(ev["message_id"])
        if msg is None:
            msg = out[ev["message_id"]] = Message(ev["campaign"], ev["sending_domain"], ev["ip_pool"],
                                                  ev["mailbox_provider"])
        msg.types.append(ev["type"])
        msg.times.append(ev["timestamp"])
        if ev["type"] == "accepted":
            msg.accepted = ev["timestamp"]
        elif ev["type"] in ("delivered", "bounced", "dropped"):
            msg.final, msg.final_ts, msg.bounce_class = ev["type"], ev["timestamp"], ev["bounce_class"]
    return out


def matches(msg: Message, scope: dict) -> bool:
    return all(getattr(msg, key) == value for key, value in scope.items())


def observed_rate(msgs, metric: str, scope: dict, start: float, end: float) -> tuple[int, int]:
    """(events, trials) of ``metric`` over messages accepted in [start, end) within ``scope``,
    counted the way detector.rates defines the metric."""
    x = n = 0
    for msg in msgs.values():
        if msg.accepted is None or not (start <= msg.accepted < end) or not matches(msg, scope):
            continue
        if metric in ("hard_bounce_rate", "block_rate"):
            if msg.final in ("delivered", "bounced"):
                n += 1
                x += msg.final == "bounced" and msg.bounce_class == {"hard_bounce_rate": "hard",
                                                                       "block_rate": "block"}[metric]
        elif metric == "complaint_rate":
            if msg.final == "delivered":
                n += 1
                x += "complained" in msg.types
        else:
            raise ValueError(metric)
    return x, n


def z_score(x: int, n: int, p: float) -> float:
    """Binomial z of x successes in n trials against rate p."""
    return (x - n * p) / math.sqrt(max(n * p * (1 - p), 1e-12))
