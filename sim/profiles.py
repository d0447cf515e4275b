"""ESP profiles: which canonical event types each ESP really posts, and how it retries.

The simulator draws every message's full fate (accepted, deferrals, final outcome,
engagement, complaint); a profile then decides which of those events the ESP's webhooks
would actually deliver. Dropping an event type does not change what happened to the
message: a Postmark message deferred twice is still delivered 15 minutes late, Postmark
just never tells anyone about the deferrals.

Event sets (from ``../shared/reference/esp-webhooks.md`` section 0 and the ingest
normalisers in ``ingest/providers/*.py``):

============  ==========================================================================
sendgrid      processed (accepted), delivered, bounce/blocked, deferred, dropped,
              spamreport, open, click, unsubscribe: everything.
mailgun       accepted, delivered, failed temporary (deferred) / permanent (bounced),
              rejected / suppress-* (dropped), complained, opened, clicked, unsubscribed.
sparkpost     injection (accepted), delivery, bounce, delay (deferred),
              policy_rejection (dropped), spam_complaint, open, click, list_unsubscribe.
postmark      Delivery, Bounce (suppression types: dropped), SpamComplaint, Open, Click,
              SubscriptionChange. No acceptance event, no per-attempt deferrals.
ses           classic identity notifications: Bounce (Permanent/Suppressed: dropped),
              Complaint, Delivery. No Send, no DeliveryDelay, no engagement (those need
              configuration-set event publishing).
mailjet       sent (= delivered), bounce, blocked (dropped), spam, open, click, unsub.
              No acceptance event, no deferrals.
============  ==========================================================================

Retry schedules and complaint lags: where a profile gives none, the simulator's generic
schedule (:data:`sim.traffic.RETRY_GAPS`: 5, 10, 20, 40 min) and complaint lag
(log-normal, median 1 h) apply. Per-ESP values below are the simulator's assumptions,
marked as such: the reference notes document the ESPs' *webhook* retry schedules, not
their SMTP retry schedules, and no ESP publishes its feedback-loop latency.

Profile names for ``--profile``: ``sends`` (every campaign posts every type, the
behaviour every default was tuned on), ``outcome-only`` (no ``accepted`` event anywhere,
otherwise everything), ``esp-mix`` (each campaign's events filtered to the set of the
ESP the world assigns it, :attr:`sim.world.Campaign.esp`), and one name per ESP above
(every campaign filtered to that ESP's set, with its retry schedule and lag).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

ALL_TYPES = ("accepted", "delivered", "bounced", "complained", "deferred", "dropped", "opened", "clicked",
             "unsubscribed")
HOUR = 3600.0


@dataclass(frozen=True)
class EspProfile:
    """One ESP's webhook behaviour."""

    name: str
    types: frozenset[str]
    retry_gaps: tuple[float, ...] | None = None     # seconds between delivery attempts (4 gaps)
    complaint_median: float | None = None            # seconds, log-normal median of the complaint lag
    numbered_types: frozenset[str] = frozenset()     # event types that carry the attempt number
    note: str = ""


ESP_PROFILES: dict[str, EspProfile] = {p.name: p for p in (
    EspProfile("sendgrid", frozenset(ALL_TYPES), numbered_types=frozenset({"deferred"}),  # `attempt`
               note="processed/delivered/bounce/deferred/dropped/spamreport/open/click/unsubscribe"),
    EspProfile("mailgun", frozenset(ALL_TYPES),
               # Assumption: Mailgun's documented *webhook* retry schedule (5, 10, 15 min, 1 h) is
               # used as the shape of its SMTP retry schedule, which is not published.
               retry_gaps=(300.0, 600.0, 900.0, 3600.0),
               numbered_types=frozenset({"delivered", "bounced", "deferred"}),  # delivery-status.attempt-no
               note="accepted/delivered/failed(temporary=deferred, permanent=bounced)/complained/..."),
    EspProfile("sparkpost", frozenset(ALL_TYPES),
               numbered_types=frozenset({"delivered", "bounced", "deferred"}),  # num_retries
               note="injection/delivery/bounce/delay/policy_rejection/spam_complaint/open/click/unsubscribe"),
    EspProfile("postmark", frozenset(ALL_TYPES) - {"accepted", "deferred"},
               # Assumption: Postmark retries soft failures over a longer schedule than the default.
               retry_gaps=(600.0, 1200.0, 2400.0, 4800.0),
               note="Delivery/Bounce/SpamComplaint/Open/Click/SubscriptionChange; nothing on acceptance"),
    EspProfile("ses", frozenset({"delivered", "bounced", "complained", "dropped"}),
               # Assumption: complaints relayed by SES arrive later than from an ESP with direct
               # feedback loops (median 3 h instead of 1 h).
               complaint_median=3 * HOUR,
               note="classic notifications: Bounce/Complaint/Delivery only"),
    EspProfile("mailjet", frozenset(ALL_TYPES) - {"accepted", "deferred"},
               note="sent(=delivered)/bounce/blocked(dropped)/spam/open/click/unsub; no acceptance event"),
)}

OUTCOME_ONLY = EspProfile("outcome-only", frozenset(ALL_TYPES) - {"accepted"},
                          note="every type except accepted, for every campaign; attempts numbered as "
                               "the campaign's ESP numbers them (an account subscribed to outcomes only)")
SENDS = EspProfile("sends", frozenset(ALL_TYPES), numbered_types=frozenset({"delivered", "bounced", "deferred"}),
                   note="every type for every campaign (today's behaviour)")

PROFILES: tuple[str, ...] = ("sends", "outcome-only", "esp-mix") + tuple(ESP_PROFILES)
#: The profiles the benchmark reports side by side.
BENCH_PROFILES: tuple[str, ...] = ("sends", "outcome-only", "esp-mix")


def profile_name(name: str) -> str:
    key = (name or "sends").strip().lower().replace("_", "-")
    if key not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})")
    return key


def campaign_profiles(profile: str, camp_esp: list[str]) -> list[EspProfile]:
    """The ESP profile each campaign's events follow under ``profile``."""
    key = profile_name(profile)
    if key == "sends":
        return [SENDS] * len(camp_esp)
    if key == "outcome-only":
        return [replace(OUTCOME_ONLY, numbered_types=ESP_PROFILES.get(esp, SENDS).numbered_types)
                for esp in camp_esp]
    if key == "esp-mix":
        return [ESP_PROFILES.get(esp, SENDS) for esp in camp_esp]
    return [ESP_PROFILES[key]] * len(camp_esp)


@dataclass(frozen=True)
class CampaignBehaviour:
    """Per-campaign arrays the vectorised simulator indexes by ``msgs.camp``."""

    emits: np.ndarray            # (campaigns, event types) bool, columns in ALL_TYPES order
    retry_gaps: np.ndarray       # (campaigns, 4) seconds
    complaint_median: np.ndarray  # (campaigns,) seconds
    numbered: np.ndarray | None = None  # (campaigns, event types) bool: carries the attempt number

    def emits_type(self, camp: int, etype: str) -> bool:
        return bool(self.emits[camp, ALL_TYPES.index(etype)])


def behaviour(profile: str, camp_esp: list[str], default_gaps: np.ndarray,
              default_complaint_median: float) -> CampaignBehaviour:
    profs = campaign_profiles(profile, camp_esp)
    emits = np.array([[t in p.types for t in ALL_TYPES] for p in profs], dtype=bool).reshape(len(profs),
                                                                                           len(ALL_TYPES))
    gaps = np.array([p.retry_gaps if p.retry_gaps is not None else tuple(default_gaps) for p in profs],
                    dtype=float).reshape(len(profs), len(default_gaps))
    lag = np.array([p.complaint_median or default_complaint_median for p in profs], dtype=float)
    numbered = np.array([[t in p.numbered_types for t in ALL_TYPES] for p in profs],
                        dtype=bool).reshape(len(profs), len(ALL_TYPES))
    return CampaignBehaviour(emits, gaps, lag, numbered)


def describe() -> dict[str, str]:
    out = {"sends": SENDS.note, "outcome-only": OUTCOME_ONLY.note,
           "esp-mix": "each campaign filtered to the set of the ESP the world assigns it"}
    for name, p in ESP_PROFILES.items():
        missing = sorted(set(ALL_TYPES) - p.types)
        out[name] = p.note + (f" (no {', '.join(missing)})" if missing else "")
    return out
