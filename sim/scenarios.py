"""Incident scenarios: each edits a clean :class:`~sim.world.World` and says what it did.

A scenario returns :class:`LabelSpec` values (where, when, which metric); the expected
rates in the final label are then computed from the very probabilities the simulator
drew outcomes from (:func:`finalize_label`), so a label can never disagree with the
traffic it describes. Times are placed as fractions of the simulated period, leaving
clean traffic before each incident for a detector's warm-up.

Rates in labels are *observable* rates as the detector computes them
(:mod:`detector.rates`): ``hard_bounce_rate`` and ``block_rate`` per delivery attempt
(delivered + bounced), ``complaint_rate`` per delivered message (complaints only come
from feedback-loop providers, never Gmail), ``volume`` in accepted messages per hour.
Rate labels describe the messages *accepted* in ``[start, end)``; their bounces follow
within seconds (minutes after retries), their complaints hours later
(``signal_lag_s`` gives the median lag).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .catalog import BULK_MEDIAN_SIZE, DOMAINS
from .traffic import COMPLAINT_DELAY_MEDIAN, Messages, scope_mask
from .world import HOUR, RateEffect, Segment, VolumeChange, World, bulk_send_duration, volume_shape

MARKETING_DOMAIN = "news.northwind-outdoor.com"


@dataclass
class LabelSpec:
    incident: str
    kind: str                 # step | ramp | silence | surge | outage
    start: float
    end: float
    scope: dict[str, str]
    metric: str               # a detector.rates metric name
    rule_hint: str
    target: float | None = None       # ramp: the rate reached at ``end``
    signal_lag_s: float = 0.0
    extra: dict = field(default_factory=dict)


Scenario = Callable[[World, np.random.Generator], list[LabelSpec]]


def _at(world: World, frac: float) -> float:
    start = world.start if world.scored_start is None else world.scored_start
    return start + frac * (world.end - start)


# ----------------------------------------------------------------------------- incidents

def provider_block(world: World, rng: np.random.Generator, *, span=(0.5, 0.75), provider: str = "gmail",
                   sending_domain: str = MARKETING_DOMAIN, rate: float = 0.35, throttle: float = 0.3) -> list[LabelSpec]:
    """A mailbox provider starts refusing one sending domain's mail (421-4.7.28 / 550-5.7.1 at Gmail)."""
    start, end = _at(world, span[0]), _at(world, span[1])
    scope = {"sending_domain": sending_domain, "mailbox_provider": provider}
    world.effects.append(RateEffect("block", scope, start, end, rate, "step", throttle))
    return [LabelSpec("provider-block", "step", start, end, scope, "block_rate", "provider_block")]


def old_list(world: World, rng: np.random.Generator, *, at: float = 0.55, rate: float = 0.08,
             size: int | None = None, size_factor: float = 0.5) -> list[LabelSpec]:
    """A newsletter that went out cleanly earlier is sent again to a stale, imported segment."""
    first = world.start + 0.1 * world.duration
    size = size or max(200, int(size_factor * BULK_MEDIAN_SIZE * world.scale))
    camp = world.add_bulk(rng, "spring-newsletter", "northwind-marketing", first, size)
    seg = Segment(_at(world, at), bulk_send_duration(size), size, {"hard": rate})
    camp.segments.append(seg)
    end = min(seg.start + seg.duration, world.end)
    return [LabelSpec("old-list", "step", seg.start, end, {"campaign": camp.name}, "hard_bounce_rate",
                      "hard_bounce_spike")]


def wrong_segment(world: World, rng: np.random.Generator, *, at: float = 0.35, rate: float = 0.006,
                  size: int | None = None, size_factor: float = 0.6) -> list[LabelSpec]:
    """A promotion goes to people who never opted in to it: complaints (and unsubscribes) jump."""
    first = world.start + 0.08 * world.duration
    size = size or max(200, int(size_factor * BULK_MEDIAN_SIZE * world.scale))
    camp = world.add_bulk(rng, "vip-preview", "fabrikam-marketing", first, size)
    seg = Segment(_at(world, at), bulk_send_duration(size), size,
                  {"complaint": rate, "unsub": 4 * camp.rates["unsub"]})
    camp.segments.append(seg)
    end = min(seg.start + seg.duration, world.end)
    return [LabelSpec("wrong-segment", "step", seg.start, end, {"campaign": camp.name}, "complaint_rate",
                      "complaint_spike", signal_lag_s=COMPLAINT_DELAY_MEDIAN)]


def silent_stop(world: World, rng: np.random.Generator, *, span=(0.5, None),
                campaign: str = "abandoned-cart") -> list[LabelSpec]:
    """An automated flow stops sending (a broken trigger): its volume falls to zero."""
    start = _at(world, span[0])
    end = _at(world, span[1]) if span[1] is not None else world.end
    world.campaign(campaign).volume_changes.append(VolumeChange(start, end, 0.0))
    return [LabelSpec("silent-stop", "silence", start, end, {"campaign": campaign}, "volume", "campaign_silence")]


def runaway(world: World, rng: np.random.Generator, *, span=(0.5, 0.6), campaign: str = "welcome-series",
            factor: float = 10.0) -> list[LabelSpec]:
    """An automated flow loops and sends several times (default 10x) its usual volume."""
    start, end = _at(world, span[0]), _at(world, span[1])
    world.campaign(campaign).volume_changes.append(VolumeChange(start, end, factor))
    return [LabelSpec("runaway", "surge", start, end, {"campaign": campaign}, "volume", "volume_surge")]


def reputation_decay(world: World, rng: np.random.Generator, *, span=(0.3, 1.0), provider: str = "microsoft",
                     sending_domain: str = MARKETING_DOMAIN, rate: float = 0.15,
                     throttle: float = 0.2) -> list[LabelSpec]:
    """A domain's reputation at one provider slides: blocks ramp up linearly over hours."""
    start, end = _at(world, span[0]), _at(world, span[1])
    scope = {"sending_domain": sending_domain, "mailbox_provider": provider}
    world.effects.append(RateEffect("block", scope, start, end, rate, "ramp", throttle))
    return [LabelSpec("reputation-decay", "ramp", start, end, scope, "block_rate", "provider_block", target=rate)]


# ----------------------------------------------------------------------------- scenarios

def webhook_outage(world: World, rng: np.random.Generator, *, span=(0.5, 0.6), esp: str = "mailgun") -> list[LabelSpec]:
    """An ESP's webhooks fail for a while (endpoint unreachable, an expired certificate): the mail
    is fine, the ESP retries the webhooks afterwards and the events arrive late, all at once."""
    start, end = _at(world, span[0]), _at(world, span[1])
    world.outages.append((esp, start, end))
    return [LabelSpec("webhook-outage", "outage", start, end, {"provider": esp}, "volume", "webhook_silence")]


def clean(world: World, rng: np.random.Generator) -> list[LabelSpec]:
    """No incident: the control for false alarms."""
    return []


def demo(world: World, rng: np.random.Generator) -> list[LabelSpec]:
    """Five incidents that start and resolve within a short period (made for 2-5 h at a speed-up).

    Warm-up first, then a wrong-segment send, a Gmail block, a runaway flow, an old list
    and a silent flow, overlapping in different scopes."""
    return (provider_block(world, rng, span=(0.35, 0.6), rate=0.4)
            + runaway(world, rng, span=(0.42, 0.52), factor=8.0)
            + old_list(world, rng, at=0.55, rate=0.1)
            + silent_stop(world, rng, span=(0.62, 0.85))
            + wrong_segment(world, rng, at=0.3, rate=0.008))


SCENARIOS: dict[str, Scenario] = {
    "clean": clean,
    "provider-block": provider_block,
    "old-list": old_list,
    "wrong-segment": wrong_segment,
    "silent-stop": silent_stop,
    "runaway": runaway,
    "reputation-decay": reputation_decay,
    "webhook-outage": webhook_outage,
    "demo": demo,
}


def describe() -> dict[str, str]:
    """Scenario name -> first line of its docstring (for ``--list``)."""
    return {name: " ".join((fn.__doc__ or "").strip().split("\n\n")[0].split()).split(": warm-up")[0]
            for name, fn in SCENARIOS.items()}


# ----------------------------------------------------------------------------- labels

def expected_rate(metric: str, p: dict[str, np.ndarray], mask: np.ndarray,
                  fbl: np.ndarray | None = None) -> float | None:
    """Expected observable rate over the masked messages for per-message probabilities ``p``
    (``fbl``: per message, does its provider report complaints; needed for ``complaint_rate``)."""
    if not mask.any():
        return None
    attempted = 1.0 - p["drop"][mask]
    if metric == "hard_bounce_rate":
        return float(p["hard"][mask].sum() / attempted.sum())
    if metric == "block_rate":
        return float(p["block"][mask].sum() / attempted.sum())
    if metric == "complaint_rate":
        # complaints per delivery to a provider with a feedback loop (the only ones that report)
        delivered = (attempted - p["hard"][mask] - p["soft"][mask] - p["block"][mask]) * fbl[mask]
        return float((delivered * p["complaint"][mask]).sum() / delivered.sum()) if delivered.sum() else None
    raise ValueError(f"no expected-rate formula for metric {metric!r}")


def expected_volume(world: World, campaign: str, start: float, end: float, with_changes: bool) -> float:
    """Expected accepted messages per hour of a steady flow over ``[start, end)``."""
    camp = world.campaign(campaign)
    grid = np.arange(start, end, 10.0) + 5.0
    if len(grid) == 0:
        return 0.0
    shape = volume_shape(grid) * (camp.volume_factor(grid) if with_changes else 1.0)
    return float(camp.hourly * shape.mean())


def _attempt_share(world: World, msgs: Messages, campaign: str) -> float:
    """Expected delivery attempts (delivered + bounced) per accepted message of a campaign."""
    ci = [c.name for c in world.campaigns].index(campaign)
    mine = msgs.camp == ci
    return float(1.0 - msgs.p_base["drop"][mine].mean()) if mine.any() else 1.0


def finalize_label(spec: LabelSpec, scenario: str, world: World, msgs: Messages, esp=None) -> dict:
    """The label of one incident; ``esp`` (:class:`sim.profiles.CampaignBehaviour`) says which
    event types each campaign's ESP posts, so the label names a metric the stream can show."""
    label = {"scenario": scenario, "incident": spec.incident, "kind": spec.kind, "start": spec.start,
             "end": spec.end, "scope": dict(spec.scope), "rule_hint": spec.rule_hint, "metric": spec.metric}
    camp_index = {c.name: i for i, c in enumerate(world.campaigns)}
    ci = camp_index.get(spec.scope.get("campaign", ""))
    if spec.kind == "outage":  # the mail is unchanged: its ESP's webhooks post nothing for a while
        esp_of = np.array([c.esp for c in world.campaigns], dtype=object)
        mine = (esp_of[msgs.camp] == spec.scope["provider"]) & (msgs.t >= spec.start) & (msgs.t < spec.end)
        label["baseline_rate"] = float(mine.sum() / ((spec.end - spec.start) / HOUR))
        label["incident_rate"] = 0.0
        label["unit"] = "messages/hour sent, posted by webhooks: none"
    elif spec.metric == "volume":
        camp = spec.scope["campaign"]
        label["baseline_rate"] = expected_volume(world, camp, spec.start, spec.end, with_changes=False)
        label["incident_rate"] = expected_volume(world, camp, spec.start, spec.end, with_changes=True)
        label["unit"] = "messages/hour"
        if esp is not None and ci is not None and not esp.emits_type(ci, "accepted"):
            # The ESP posts no acceptance events: the only volume the stream carries is delivery
            # attempts (delivered + bounced), which trail the sends by the ESP's retries.
            share = _attempt_share(world, msgs, camp)
            label["metric"] = "delivery_volume"
            label["baseline_rate"] *= share
            label["incident_rate"] *= share
            label["unit"] = "delivery attempts/hour"
    else:
        mask = scope_mask(world, msgs, spec.scope) & (msgs.t >= spec.start) & (msgs.t < spec.end)
        fbl = DOMAINS.fbl[msgs.dom]
        label["baseline_rate"] = expected_rate(spec.metric, msgs.p_base, mask, fbl)
        if spec.kind == "ramp":
            # The rate reached at the end of the ramp (the mean over the ramp is half-way).
            at_end = dict(msgs.p)
            outcome = {"block_rate": "block", "hard_bounce_rate": "hard"}[spec.metric]
            at_end[outcome] = np.where(mask, spec.target, msgs.p[outcome])
            label["incident_rate"] = expected_rate(spec.metric, at_end, mask, fbl)
            label["mean_incident_rate"] = expected_rate(spec.metric, msgs.p, mask, fbl)
        else:
            label["incident_rate"] = expected_rate(spec.metric, msgs.p, mask, fbl)
        label["messages"] = int(mask.sum())
        label["unit"] = "fraction"
        label["basis"] = "messages accepted in [start, end)"
    if spec.signal_lag_s:
        label["signal_lag_s"] = spec.signal_lag_s
        if spec.metric == "complaint_rate" and esp is not None and ci is not None:
            label["signal_lag_s"] = float(esp.complaint_median[ci])   # this ESP's complaint lag
    label.update(spec.extra)
    return label
