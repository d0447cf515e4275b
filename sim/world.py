"""Campaign specifications: what is sent, when, by whom, and at which baseline rates.

A :class:`World` is a plain description (no messages yet). Scenarios edit it (add a bulk
segment with a bad list, multiply a flow's volume, make a provider block a domain)
before :mod:`sim.traffic` turns it into messages and events. Campaign-to-campaign
overdispersion comes from drawing each campaign's rates from a beta distribution around
the industry baseline, so no two campaigns share exactly the same rates.
"""
from __future__ import annotations

import datetime as _dt
import math
from dataclasses import dataclass, field

import numpy as np

from .catalog import (BULK_MEDIAN_SIZE, BULK_NAMES, BULK_THROUGHPUT_PER_HOUR, DOMAINS, SENDERS,
                      STEADY_FLOWS, Sender)

HOUR = 3600.0

#: Baseline rate means (per message) and their campaign-to-campaign coefficient of variation.
#: Hard/soft bounces follow Mailchimp's all-industry benchmark (0.40% / 0.61%); complaints
#: are the rate an ESP reports (0.02-0.08% band, anchors.md A.3), taken as SES computes it:
#: complaints per delivery to providers with a feedback loop (the others report none).
BASELINE: dict[str, tuple[float, float]] = {
    "drop": (0.003, 0.3),
    "hard": (0.004, 0.3),
    "soft": (0.006, 0.3),
    "block": (0.002, 0.4),
    "defer": (0.02, 0.3),
    "complaint": (0.0004, 0.35),
    "open": (0.22, 0.25),
    "click": (0.12, 0.3),      # of opens
    "unsub": (0.0015, 0.4),
}
#: Kind-specific adjustments: transactional mail is wanted (few complaints/unsubscribes,
#: high opens), bulk mail is where lists age.
KIND_FACTORS: dict[str, dict[str, float]] = {
    "bulk": {"hard": 1.2, "complaint": 1.3, "unsub": 1.5},
    "triggered": {"hard": 0.8, "complaint": 0.8, "unsub": 0.8, "open": 1.3},
    "transactional": {"hard": 0.5, "complaint": 0.15, "unsub": 0.05, "open": 1.8, "click": 1.5},
}
RATE_KEYS = tuple(BASELINE)


def draw_rate(rng: np.random.Generator, mean: float, cv: float) -> float:
    """One campaign's rate from Beta with the given mean and coefficient of variation."""
    mean = min(max(mean, 1e-9), 0.999)
    kappa = max((1.0 - mean) / (mean * cv * cv) - 1.0, 1.0)
    return float(rng.beta(mean * kappa, (1.0 - mean) * kappa))


def diurnal(t: np.ndarray) -> np.ndarray:
    """Relative volume by time of day (mean 1 over a day): peak 19:00 UTC (14:00 US East),
    trough 07:00 UTC, ratio 4:1."""
    hours = (np.asarray(t, dtype=float) % 86400.0) / HOUR
    return 1.0 + 0.6 * np.cos(2.0 * np.pi * (hours - 19.0) / 24.0)


#: Relative volume on Saturdays and Sundays (UTC) against a weekday: people buy, sign up and
#: reset passwords less at weekends, and marketers schedule fewer newsletters (see
#: :data:`WEEKEND_BULK_KEEP`). Weekdays are 1, so runs inside one weekday are unchanged.
WEEKEND_FACTOR = 0.7
#: Share of bulk sends drawn on a weekend that are kept (the rest are not sent).
WEEKEND_BULK_KEEP = 0.4


def is_weekend(t: np.ndarray | float) -> np.ndarray:
    """Saturday or Sunday (UTC). 1970-01-01 was a Thursday, so day 2 mod 7 is a Saturday."""
    day = np.floor(np.asarray(t, dtype=float) / 86400.0).astype(np.int64)
    return ((day + 3) % 7) >= 5


def weekly(t: np.ndarray) -> np.ndarray:
    """Relative volume by day of week: 1 on weekdays, :data:`WEEKEND_FACTOR` at weekends."""
    return np.where(is_weekend(t), WEEKEND_FACTOR, 1.0)


def volume_shape(t: np.ndarray) -> np.ndarray:
    """Steady-flow volume shape: time of day (:func:`diurnal`) times day of week (:func:`weekly`)."""
    return diurnal(t) * weekly(t)


@dataclass
class Segment:
    """One bulk send (or one part of it): ``size`` messages spread over ``[start, start+duration)``.

    ``overrides`` replaces the campaign's rates for this segment's messages (an old list:
    ``{"hard": 0.08}``)."""

    start: float
    duration: float
    size: int
    overrides: dict[str, float] = field(default_factory=dict)


@dataclass
class VolumeChange:
    """Multiply a steady flow's volume by ``factor`` during ``[start, end)`` (0 = silence)."""

    start: float
    end: float
    factor: float


@dataclass
class Campaign:
    name: str
    kind: str                     # bulk | triggered | transactional
    sender: Sender
    rates: dict[str, float]
    domain_p: np.ndarray          # recipient-domain probabilities for this campaign's list
    hourly: float = 0.0           # steady flows: mean messages per hour (before diurnal shape)
    segments: list[Segment] = field(default_factory=list)
    volume_changes: list[VolumeChange] = field(default_factory=list)

    @property
    def sending_domain(self) -> str:
        return self.sender.sending_domain

    @property
    def ip_pool(self) -> str:
        return self.sender.ip_pool

    @property
    def esp(self) -> str:
        return self.sender.esp

    def volume_factor(self, t: np.ndarray) -> np.ndarray:
        factor = np.ones_like(t, dtype=float)
        for change in self.volume_changes:
            factor[(t >= change.start) & (t < change.end)] *= change.factor
        return factor


@dataclass
class RateEffect:
    """A scoped, timed change to one outcome probability (a provider block, a reputation slide).

    ``scope`` keys: ``sending_domain``, ``ip_pool``, ``mailbox_provider``, ``campaign``,
    ``esp``. ``shape`` ``step`` sets the rate to ``rate`` inside the interval; ``ramp``
    moves it linearly from each message's baseline to ``rate`` across the interval.
    ``throttle`` makes the provider also defer a share of the other messages with its
    blocking reply (what a real block looks like in the deferral stream)."""

    outcome: str
    scope: dict[str, str]
    start: float
    end: float
    rate: float
    shape: str = "step"
    throttle: float = 0.0


@dataclass
class World:
    seed: int
    start: float
    duration: float
    scale: float
    campaigns: list[Campaign]
    effects: list[RateEffect] = field(default_factory=list)
    #: Where the scored period starts (scenario onsets are fractions of it); earlier traffic
    #: is history a detector learns from (a steady flow is learned over a day).
    scored_start: float | None = None
    #: Webhook outages: (ESP, start, end) during which that ESP's webhooks do not get through.
    outages: list[tuple[str, float, float]] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.start + self.duration

    def campaign(self, name: str) -> Campaign:
        for c in self.campaigns:
            if c.name == name:
                return c
        raise KeyError(f"no campaign named {name!r}")

    def add_bulk(self, rng: np.random.Generator, base_name: str, sender_key: str, start: float,
                 size: int) -> Campaign:
        """Add a bulk campaign with one clean segment starting at ``start``."""
        name = _bulk_name(base_name, start)
        taken = {c.name for c in self.campaigns}
        suffix = 2
        while name in taken:
            name, suffix = f"{_bulk_name(base_name, start)}-{suffix}", suffix + 1
        camp = _new_campaign(rng, name, "bulk", SENDERS[sender_key])
        camp.segments.append(Segment(start, bulk_send_duration(size), size))
        self.campaigns.append(camp)
        return camp


def bulk_send_duration(size: int) -> float:
    """How long an ESP takes to hand ``size`` messages out (fixed throughput, at least 2 min)."""
    return max(120.0, size / BULK_THROUGHPUT_PER_HOUR * HOUR)


def _bulk_name(base: str, start: float) -> str:
    stamp = _dt.datetime.fromtimestamp(start, tz=_dt.timezone.utc).strftime("%Y%m%d-%H%M")
    return f"{base}-{stamp}"


#: A healthy campaign's complaint rate stays inside the healthy band (anchors.md A.3: 0.02-0.08%):
#: a draw from the Beta's tail above SES's 0.1% review line would be a real compliance incident
#: on a stream labelled clean.
HEALTHY_COMPLAINT_MAX = 0.0008


def _campaign_rates(rng: np.random.Generator, kind: str) -> dict[str, float]:
    factors = KIND_FACTORS[kind]
    rates = {key: draw_rate(rng, mean * factors.get(key, 1.0), cv) for key, (mean, cv) in BASELINE.items()}
    rates["complaint"] = min(rates["complaint"], HEALTHY_COMPLAINT_MAX)
    return rates


def _domain_mix(rng: np.random.Generator) -> np.ndarray:
    """A campaign's recipient-domain mix: the global mix with Dirichlet noise (lists differ)."""
    p = rng.dirichlet(DOMAINS.weight * 400.0 + 1e-3)
    return p / p.sum()


def _new_campaign(rng: np.random.Generator, name: str, kind: str, sender: Sender, hourly: float = 0.0) -> Campaign:
    return Campaign(name=name, kind=kind, sender=sender, rates=_campaign_rates(rng, kind),
                    domain_p=_domain_mix(rng), hourly=hourly)


def build_world(seed: int, start: float, duration: float, scale: float = 1.0) -> World:
    """The clean baseline: every steady flow, plus about one bulk send per two hours."""
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    rng = np.random.default_rng([seed, 1])
    campaigns = [_new_campaign(rng, name, kind, SENDERS[sender], hourly * scale)
                 for name, kind, sender, hourly in STEADY_FLOWS]
    world = World(seed=seed, start=float(start), duration=float(duration), scale=scale, campaigns=campaigns)
    n_bulk = max(1, int(rng.poisson(duration / (2 * HOUR)))) if duration >= HOUR else 0
    latest = max(start, start + duration - HOUR)
    weekend_rng = np.random.default_rng([seed, 6])   # its own stream: weekday-only runs are unchanged
    for i in range(n_bulk):
        base, sender = BULK_NAMES[int(rng.integers(len(BULK_NAMES)))]
        when = float(rng.uniform(start, latest))
        size = max(50, int(BULK_MEDIAN_SIZE * scale * math.exp(rng.normal(0.0, 0.5))))
        if is_weekend(when) and weekend_rng.random() >= WEEKEND_BULK_KEEP:
            _new_campaign(rng, "skipped", "bulk", SENDERS[sender])   # same draws as a kept send
            continue
        world.add_bulk(rng, base, sender, when, size)
    return world
