"""Turn a :class:`~sim.world.World` into messages, then into canonical events.

Everything is vectorised per campaign (numpy draws over all of a campaign's messages at
once); Python loops run over campaigns, retry attempts and reply templates, never over
messages. The two stages are kept apart because ground-truth labels are computed from
the per-message probabilities (:class:`Messages`), not from the sampled outcomes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .catalog import APPLE_MPP_OPEN_RATE, DOMAINS, provider_factor
from .replies import DROP_REASONS, REPLIES, THROTTLE, replies_for
from .world import HOUR, RATE_KEYS, World, volume_shape

if TYPE_CHECKING:
    from .profiles import CampaignBehaviour

MINUTE = 60.0
#: Per campaign-hour multiplicative noise on failure rates (extra-binomial variation).
HOURLY_JITTER_SIGMA = 0.10
_JITTERED = ("hard", "soft", "block", "defer", "complaint")
#: Outcome codes.
DELIVERED, DROPPED, HARD, SOFT, BLOCK = range(5)
_BAD = ((DROPPED, "drop"), (HARD, "hard"), (SOFT, "soft"), (BLOCK, "block"))
#: Retry gaps between delivery attempts of a deferred message (seconds, before jitter).
RETRY_GAPS = np.array([300.0, 600.0, 1200.0, 2400.0])
MAX_DEFERRALS = len(RETRY_GAPS)

# Webhook delivery: ESPs batch (SendGrid posts every 30 s), so most events arrive seconds
# after they happen; a few arrive much later (retries after an endpoint failure) and a
# few arrive twice (a retry of a batch that had in fact been received).
WEBHOOK_DELAY_MEDIAN = 2.0
LATE_FRACTION = 0.004
LATE_DELAY_MEDIAN = 20 * MINUTE
DUPLICATE_FRACTION = 0.002
DUPLICATE_DELAY_MEDIAN = 120.0

TYPE_NAMES = ("accepted", "delivered", "bounced", "complained", "deferred", "dropped", "opened", "clicked",
              "unsubscribed")
T = {name: i for i, name in enumerate(TYPE_NAMES)}
BOUNCE_NAMES = ("hard", "soft", "block")
_OUTCOME_BCLASS = {HARD: 0, SOFT: 1, BLOCK: 2}

_REPLY_PROVIDERS = ("gmail", "microsoft", "yahoo", "apple")
#: Per domain: which reply table row it uses (index into _REPLY_PROVIDERS, 4 = default).
_DOMAIN_REPLY_KEY = np.array([_REPLY_PROVIDERS.index(p) if p in _REPLY_PROVIDERS else 4
                              for p in DOMAINS.provider])
_FACTORS = {k: provider_factor(k) for k in ("hard", "soft", "block", "defer")}
_IS_APPLE = np.array([p == "apple" for p in DOMAINS.provider])


@dataclass
class Messages:
    """One row per message handed to the ESP.

    ``p`` are the probabilities actually used to draw outcomes; ``p_base`` the same before
    scenario overrides and effects (what the campaign would have done without the incident).
    Complaint probabilities are per delivered message and already zero outside FBL domains.
    """

    t: np.ndarray            # accepted time
    camp: np.ndarray         # campaign index
    dom: np.ndarray          # recipient-domain index
    rid: np.ndarray          # synthetic recipient number
    ip: np.ndarray           # global sending-IP index
    p: dict[str, np.ndarray]
    p_base: dict[str, np.ndarray]
    throttle: np.ndarray     # probability that a provider defers it with its blocking reply

    def __len__(self) -> int:
        return len(self.t)


@dataclass
class Vocab:
    """String tables the event columns index into."""

    campaigns: list[str]
    camp_esp: list[str]
    camp_sdom: list[str]
    camp_pool: list[str]
    ips: list[str]
    reasons: list[str]


def _lognormal(rng: np.random.Generator, median: float, sigma: float, size: int) -> np.ndarray:
    return median * np.exp(sigma * rng.standard_normal(size))


# --------------------------------------------------------------------------- messages

def _arrival_times(rng: np.random.Generator, world: World, camp) -> tuple[np.ndarray, list[tuple[int, int, dict]]]:
    """Accepted times of one campaign, and (lo, hi, overrides) slices for bulk segments."""
    if camp.kind == "bulk":
        parts, slices, n = [], [], 0
        for seg in camp.segments:
            times = seg.start + seg.duration * rng.random(seg.size)
            times = times[(times >= world.start) & (times < world.end)]
            slices.append((n, n + len(times), seg.overrides))
            parts.append(times)
            n += len(times)
        return (np.concatenate(parts) if parts else np.empty(0)), slices
    # Minute bins, split at every volume change so a stop or surge starts exactly on time.
    cuts = [t for ch in camp.volume_changes for t in (ch.start, ch.end) if world.start < t < world.end]
    edges = np.unique(np.concatenate([np.arange(world.start, world.end, MINUTE), cuts]))
    widths = np.diff(np.append(edges, world.end))
    mid = edges + widths / 2
    lam = camp.hourly / HOUR * widths * volume_shape(mid) * camp.volume_factor(mid)
    counts = rng.poisson(lam)
    times = np.repeat(edges, counts) + rng.random(int(counts.sum())) * np.repeat(widths, counts)
    return times, []


def complaint_p(rate: float | np.ndarray, dom: np.ndarray) -> np.ndarray:
    """Per-message complaint probability: ``rate`` is the rate ESPs report, complaints per
    delivery to a provider with a feedback loop (as SES computes it, and as ddetect's
    ``complaint_rate`` does); everyone else complains unseen (zero, as seen by the ESP)."""
    return np.minimum(np.asarray(rate), 1.0) * DOMAINS.fbl[dom]


def generate_messages(world: World, rng: np.random.Generator, ip_index: dict[str, int]) -> Messages:
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("t", "camp", "dom", "rid", "ip")}
    p_parts: dict[str, list[np.ndarray]] = {k: [] for k in RATE_KEYS}
    base_parts: dict[str, list[np.ndarray]] = {k: [] for k in RATE_KEYS}
    n_hours = int(np.ceil(world.duration / HOUR)) + 1
    for ci, camp in enumerate(world.campaigns):
        t, slices = _arrival_times(rng, world, camp)
        n = len(t)
        dom = rng.choice(len(DOMAINS.names), size=n, p=camp.domain_p)
        hour = np.clip(((t - world.start) // HOUR).astype(np.int64), 0, n_hours - 1)
        jitter = np.exp(HOURLY_JITTER_SIGMA * rng.standard_normal((n_hours, len(_JITTERED)))
                        - HOURLY_JITTER_SIGMA ** 2 / 2)
        probs: dict[str, np.ndarray] = {}
        for key in RATE_KEYS:
            rate = camp.rates[key]
            if key == "complaint":
                p = complaint_p(rate, dom)
            elif key == "open":
                p = np.where(_IS_APPLE[dom], APPLE_MPP_OPEN_RATE, rate)
            else:
                p = np.full(n, rate) * (_FACTORS[key][dom] if key in _FACTORS else 1.0)
            if key in _JITTERED:
                p = p * jitter[hour, _JITTERED.index(key)]
            probs[key] = p
        base = {k: v.copy() for k, v in probs.items()}
        for lo, hi, overrides in slices:
            for key, value in overrides.items():
                probs[key][lo:hi] = complaint_p(value, dom[lo:hi]) if key == "complaint" else value
        ips = np.array([ip_index[a] for a in camp.sender.ips])
        for name, arr in (("t", t), ("camp", np.full(n, ci, dtype=np.int32)), ("dom", dom.astype(np.int32)),
                          ("rid", rng.integers(0, 50_000_000, size=n)), ("ip", rng.choice(ips, size=n))):
            parts[name].append(arr)
        for key in RATE_KEYS:
            p_parts[key].append(probs[key])
            base_parts[key].append(base[key])
    cat = {k: np.concatenate(v) if v else np.empty(0) for k, v in parts.items()}
    p = {k: np.concatenate(v) if v else np.empty(0) for k, v in p_parts.items()}
    p_base = {k: np.concatenate(v) if v else np.empty(0) for k, v in base_parts.items()}
    msgs = Messages(t=cat["t"].astype(float), camp=cat["camp"].astype(np.int32), dom=cat["dom"].astype(np.int32),
                    rid=cat["rid"].astype(np.int64), ip=cat["ip"].astype(np.int32), p=p, p_base=p_base,
                    throttle=np.zeros(len(cat["t"])))
    apply_effects(world, msgs)
    return msgs


def scope_mask(world: World, msgs: Messages, scope: dict[str, str]) -> np.ndarray:
    """Messages matching every key of ``scope``."""
    mask = np.ones(len(msgs), dtype=bool)
    for key, value in scope.items():
        if key == "mailbox_provider":
            per_dom = np.array([p == value for p in DOMAINS.provider])
            mask &= per_dom[msgs.dom]
        elif key == "recipient_domain":
            per_dom = np.array([d == value for d in DOMAINS.names])
            mask &= per_dom[msgs.dom]
        else:
            attr = {"campaign": "name", "sending_domain": "sending_domain", "ip_pool": "ip_pool", "esp": "esp",
                    "provider": "esp"}.get(key)
            if attr is None:
                raise ValueError(f"unknown scope field {key!r}")
            per_camp = np.array([getattr(c, attr) == value for c in world.campaigns])
            mask &= per_camp[msgs.camp] if len(per_camp) else False
    return mask


def apply_effects(world: World, msgs: Messages) -> None:
    """Apply every scoped rate effect of the world to the message probabilities."""
    for eff in world.effects:
        inside = scope_mask(world, msgs, eff.scope) & (msgs.t >= eff.start) & (msgs.t < eff.end)
        if not inside.any():
            continue
        if eff.shape == "ramp":
            frac = (msgs.t[inside] - eff.start) / (eff.end - eff.start)
        elif eff.shape == "step":
            frac = np.ones(int(inside.sum()))
        else:
            raise ValueError(f"unknown effect shape {eff.shape!r}")
        current = msgs.p[eff.outcome][inside]
        if eff.outcome == "complaint":
            target = complaint_p(eff.rate, msgs.dom[inside])
        else:
            target = np.full(len(current), eff.rate)
        msgs.p[eff.outcome][inside] = current + (target - current) * frac
        if eff.throttle:
            msgs.throttle[inside] = np.maximum(msgs.throttle[inside], eff.throttle * frac)


# --------------------------------------------------------------------------- events

class _Reasons:
    """Interns formatted reply texts; formats each distinct (template, ip, domain) once."""

    def __init__(self, ips: list[str], sdoms: list[str]):
        self.texts: list[str] = []
        self._index: dict[str, int] = {}
        self._templates: list[str] = []
        self._tindex: dict[str, int] = {}
        self._ips, self._sdoms = ips, sdoms

    def text(self, value: str) -> int:
        idx = self._index.get(value)
        if idx is None:
            idx = self._index[value] = len(self.texts)
            self.texts.append(value)
        return idx

    def template(self, template: str) -> int:
        idx = self._tindex.get(template)
        if idx is None:
            idx = self._tindex[template] = len(self._templates)
            self._templates.append(template)
        return idx

    def format(self, tmpl: np.ndarray, ip: np.ndarray, sdom: np.ndarray) -> np.ndarray:
        """Reason index per row for template/ip/sending-domain index columns."""
        if len(tmpl) == 0:
            return np.empty(0, dtype=np.int32)
        key = (tmpl.astype(np.int64) * len(self._ips) + ip) * len(self._sdoms) + sdom
        uniq, inverse = np.unique(key, return_inverse=True)
        out = np.empty(len(uniq), dtype=np.int32)
        for j, k in enumerate(uniq.tolist()):
            k, s = divmod(k, len(self._sdoms))
            t, i = divmod(k, len(self._ips))
            out[j] = self.text(self._templates[t].format(ip=self._ips[i], domain=self._sdoms[s]))
        return out[inverse]


def _choose_replies(rng: np.random.Generator, reasons: _Reasons, outcome: str,
                    dom: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(template index, smtp code) per row for ``outcome`` at each row's provider."""
    tmpl = np.empty(len(dom), dtype=np.int32)
    code = np.empty(len(dom), dtype=np.int16)
    key = _DOMAIN_REPLY_KEY[dom]
    for k, prov in enumerate(_REPLY_PROVIDERS + ("default",)):
        rows = np.nonzero(key == k)[0]
        if len(rows) == 0:
            continue
        replies, weights = replies_for(outcome, prov)
        pick = rng.choice(len(replies), size=len(rows), p=weights)
        tmpl[rows] = np.array([reasons.template(r.template) for r in replies])[pick]
        code[rows] = np.array([r.code for r in replies])[pick]
    return tmpl, code


@dataclass
class RawEvents:
    ts: np.ndarray
    type: np.ndarray
    bclass: np.ndarray       # -1: none, else index into BOUNCE_NAMES
    msg: np.ndarray
    code: np.ndarray         # 0: none
    reason: np.ndarray       # -1: none
    attempt: np.ndarray      # delivery attempt number (1 = first), 0: not reported / not an attempt


def generate_events(world: World, msgs: Messages, rng: np.random.Generator, vocab_ips: list[str],
                    esp: "CampaignBehaviour | None" = None) -> tuple[RawEvents, list[str]]:
    """Sample each message's fate and emit its events (in no particular order).

    ``esp`` (:func:`sim.profiles.behaviour`) gives each campaign its ESP's retry schedule,
    complaint lag and the event types its webhooks post; events of other types are
    removed after every fate is drawn, so the random draws (and thus every message's
    fate) are the same under every profile. Without it: the generic schedule and lag,
    every type."""
    m = len(msgs)
    sdoms = sorted({c.sending_domain for c in world.campaigns})
    camp_sdom = np.array([sdoms.index(c.sending_domain) for c in world.campaigns], dtype=np.int64)
    reasons = _Reasons(vocab_ips, sdoms)
    kind_bulk = np.array([c.kind == "bulk" for c in world.campaigns])
    sdom = camp_sdom[msgs.camp] if m else np.empty(0, dtype=np.int64)

    # --- outcome: dropped / hard / soft / block / delivered
    bad = np.stack([msgs.p[key] for _, key in _BAD]) if m else np.zeros((4, 0))
    total = bad.sum(axis=0)
    over = total > 1.0
    if over.any():
        bad[:, over] /= total[over]
    cum = np.cumsum(bad, axis=0)
    u = rng.random(m)
    outcome = np.full(m, DELIVERED, dtype=np.int8)
    for row in range(len(_BAD) - 1, -1, -1):
        outcome[u < cum[row]] = _BAD[row][0]

    # --- replies for bounces (chosen first: a 4xx block is reported after retries)
    bounce_tmpl = np.full(m, -1, dtype=np.int32)
    bounce_code = np.zeros(m, dtype=np.int16)
    for code_, name in ((HARD, "hard"), (SOFT, "soft"), (BLOCK, "block")):
        rows = np.nonzero(outcome == code_)[0]
        bounce_tmpl[rows], bounce_code[rows] = _choose_replies(rng, reasons, name, msgs.dom[rows])

    # --- deferrals
    attempted = (outcome == DELIVERED) | (outcome == SOFT) | (outcome == BLOCK)
    throttled = attempted & (rng.random(m) < msgs.throttle)
    deferred = attempted & ((rng.random(m) < msgs.p["defer"]) | throttled)
    temp_block = (outcome == BLOCK) & (bounce_code < 500)
    deferred |= temp_block
    n_def = np.where(deferred, np.minimum(rng.geometric(0.55, size=m), MAX_DEFERRALS), 0)
    base_gaps = esp.retry_gaps[msgs.camp] if esp is not None and m else RETRY_GAPS[None, :]
    gaps = base_gaps * rng.uniform(0.8, 1.25, size=(m, MAX_DEFERRALS))
    latency = _lognormal(rng, 1.5, 0.8, m) * np.where(kind_bulk[msgs.camp], 2.5, 1.0) if m else np.empty(0)
    t_try = msgs.t + latency
    cum_gaps = np.concatenate([np.zeros((m, 1)), np.cumsum(gaps, axis=1)], axis=1)
    t_final = t_try + cum_gaps[np.arange(m), n_def]

    defer_tmpl, defer_code = _choose_replies(rng, reasons, "defer", msgs.dom)
    throttle_key = _DOMAIN_REPLY_KEY[msgs.dom]
    throttle_tmpl = np.array([reasons.template(THROTTLE[p][1]) for p in _REPLY_PROVIDERS + ("default",)])
    throttle_code = np.array([THROTTLE[p][0] for p in _REPLY_PROVIDERS + ("default",)], dtype=np.int16)
    defer_tmpl = np.where(throttled, throttle_tmpl[throttle_key], defer_tmpl)
    defer_code = np.where(throttled, throttle_code[throttle_key], defer_code)
    defer_tmpl = np.where(temp_block, bounce_tmpl, defer_tmpl)
    defer_code = np.where(temp_block, bounce_code, defer_code)

    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("ts", "type", "bclass", "msg", "code", "reason",
                                                          "attempt")}

    def emit(rows: np.ndarray, ts: np.ndarray, etype: str, bclass: np.ndarray | int = -1,
             code: np.ndarray | int = 0, reason: np.ndarray | int = -1, attempt: np.ndarray | int = 0) -> None:
        k = len(rows)
        cols["attempt"].append(np.broadcast_to(np.asarray(attempt, dtype=np.int8), (k,)))
        cols["ts"].append(ts)
        cols["type"].append(np.full(k, T[etype], dtype=np.int8))
        cols["bclass"].append(np.broadcast_to(np.asarray(bclass, dtype=np.int8), (k,)))
        cols["msg"].append(rows.astype(np.int64))
        cols["code"].append(np.broadcast_to(np.asarray(code, dtype=np.int16), (k,)))
        cols["reason"].append(np.broadcast_to(np.asarray(reason, dtype=np.int32), (k,)))

    everyone = np.arange(m)
    emit(everyone, msgs.t, "accepted")
    rows = np.nonzero(outcome == DROPPED)[0]
    drop_texts = np.array([reasons.text(text) for text, _ in DROP_REASONS], dtype=np.int32)
    drop_pick = rng.choice(len(DROP_REASONS), size=len(rows), p=[w for _, w in DROP_REASONS])
    emit(rows, msgs.t[rows] + _lognormal(rng, 0.5, 0.5, len(rows)), "dropped", reason=drop_texts[drop_pick])
    for k in range(MAX_DEFERRALS):
        rows = np.nonzero(n_def > k)[0]
        emit(rows, t_try[rows] + cum_gaps[rows, k], "deferred", code=defer_code[rows],
             reason=reasons.format(defer_tmpl[rows], msgs.ip[rows], sdom[rows]), attempt=k + 1)
    bounced = np.nonzero((outcome == HARD) | (outcome == SOFT) | (outcome == BLOCK))[0]
    bclass = np.array([_OUTCOME_BCLASS.get(o, -1) for o in range(5)], dtype=np.int8)[outcome[bounced]]
    emit(bounced, t_final[bounced], "bounced", bclass=bclass, code=bounce_code[bounced],
         reason=reasons.format(bounce_tmpl[bounced], msgs.ip[bounced], sdom[bounced]), attempt=n_def[bounced] + 1)
    delivered = np.nonzero(outcome == DELIVERED)[0]
    emit(delivered, t_final[delivered], "delivered", code=250, attempt=n_def[delivered] + 1)

    # --- engagement and feedback, only for delivered mail
    td = t_final[delivered]
    apple = _IS_APPLE[msgs.dom[delivered]]
    opened = rng.random(len(delivered)) < msgs.p["open"][delivered]
    open_delay = np.where(apple, _lognormal(rng, 180.0, 0.8, len(delivered)),
                          _lognormal(rng, 45 * MINUTE, 1.2, len(delivered)))
    t_open = td + open_delay
    emit(delivered[opened], t_open[opened], "opened")
    clicked = opened & (rng.random(len(delivered)) < msgs.p["click"][delivered])
    emit(delivered[clicked], t_open[clicked] + _lognormal(rng, 40.0, 1.2, int(clicked.sum())), "clicked")
    unsub = rng.random(len(delivered)) < msgs.p["unsub"][delivered]
    emit(delivered[unsub], td[unsub] + _lognormal(rng, HOUR, 1.2, int(unsub.sum())), "unsubscribed")
    complained = rng.random(len(delivered)) < msgs.p["complaint"][delivered]
    lag = complaint_delay(rng, int(complained.sum()))
    if esp is not None:
        lag = lag * (esp.complaint_median[msgs.camp[delivered[complained]]] / COMPLAINT_DELAY_MEDIAN)
    emit(delivered[complained], td[complained] + lag, "complained")

    raw = RawEvents(**{k: np.concatenate(v) for k, v in cols.items()})
    keep = raw.ts < world.end            # the stream is cut at the end of the simulated period
    if esp is not None and len(raw.ts):  # what this campaign's ESP posts at all
        keep &= esp.emits[msgs.camp[raw.msg], raw.type]
    raw = RawEvents(**{k: getattr(raw, k)[keep] for k in raw.__dataclass_fields__})
    if esp is not None and esp.numbered is not None and len(raw.ts):
        raw.attempt = np.where(esp.numbered[msgs.camp[raw.msg], raw.type], raw.attempt, 0).astype(np.int8)
    return raw, reasons.texts


#: Complaints come hours after delivery: the recipient has to open the mail first.
COMPLAINT_DELAY_MEDIAN = HOUR
COMPLAINT_DELAY_SIGMA = 0.9


def complaint_delay(rng: np.random.Generator, n: int) -> np.ndarray:
    return _lognormal(rng, COMPLAINT_DELAY_MEDIAN, COMPLAINT_DELAY_SIGMA, n)


def webhook_arrivals(raw: RawEvents, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Event sequence numbers (in timestamp order), arrival times and row order, with duplicates.

    Returns ``(rows, seq, arrival)`` already sorted by arrival: ``rows`` index ``raw``,
    ``seq`` numbers each distinct event (a duplicate repeats its original's number)."""
    n = len(raw.ts)
    by_time = np.lexsort((raw.msg, raw.type, raw.ts))
    seq = np.empty(n, dtype=np.int64)
    seq[by_time] = np.arange(n)
    arrival = raw.ts + _lognormal(rng, WEBHOOK_DELAY_MEDIAN, 1.0, n)
    late = rng.random(n) < LATE_FRACTION
    arrival[late] += _lognormal(rng, LATE_DELAY_MEDIAN, 0.8, int(late.sum()))
    dup = np.nonzero(rng.random(n) < DUPLICATE_FRACTION)[0]
    dup_arrival = arrival[dup] + _lognormal(rng, DUPLICATE_DELAY_MEDIAN, 1.0, len(dup))
    rows = np.concatenate([np.arange(n), dup])
    seq = np.concatenate([seq, seq[dup]])
    arrival = np.concatenate([arrival, dup_arrival])
    order = np.lexsort((seq, arrival))
    return rows[order], seq[order], arrival[order]


#: After a webhook outage the ESP retries what failed; the backlog drains over minutes.
OUTAGE_DRAIN_MEDIAN = 5 * MINUTE


def webhook_outages(world: World, msgs: Messages, raw: RawEvents, rows: np.ndarray, seq: np.ndarray,
                    arrival: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hold back the webhooks of each outage's ESP that would have arrived during it: they arrive
    after it ends, as the ESP's retries drain the backlog (event times are unchanged)."""
    esp_of = np.array([c.esp for c in world.campaigns], dtype=object)
    event_esp = esp_of[msgs.camp[raw.msg[rows]]]
    arrival = arrival.copy()
    for esp, start, end in world.outages:
        held = (event_esp == esp) & (arrival >= start) & (arrival < end)
        arrival[held] = end + _lognormal(rng, OUTAGE_DRAIN_MEDIAN, 1.0, int(held.sum()))
    order = np.lexsort((seq, arrival))
    return rows[order], seq[order], arrival[order]
