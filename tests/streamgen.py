"""A tiny seeded generator of canonical events for engine tests (the full simulator is sim/)."""
from __future__ import annotations

import numpy as np

PROVIDER_DOMAINS = {"gmail": "gmail.com", "microsoft": "outlook.com", "yahoo": "yahoo.com", "apple": "icloud.com"}
PROVIDER_SHARE = {"gmail": 0.5, "microsoft": 0.2, "yahoo": 0.2, "apple": 0.1}


def stream(*, seed: int, start: float, hours: float, rate_per_s: float, campaigns=("spring",),
           hard=0.01, complaint=0.0005, incident=None):
    """Yield events in timestamp order. ``incident`` = dict(campaign, provider, start, end, hard=...,
    complaint=..., block=..., volume_factor=...)."""
    rng = np.random.default_rng(seed)
    n = rng.poisson(rate_per_s * hours * 3600 * len(campaigns))
    ts = np.sort(rng.uniform(start, start + hours * 3600, n))
    camp = rng.integers(0, len(campaigns), n)
    provs = list(PROVIDER_SHARE)
    prov = rng.choice(len(provs), n, p=list(PROVIDER_SHARE.values()))
    u = rng.random(n)
    u2 = rng.random(n)
    for i in range(n):
        t = float(ts[i])
        c = campaigns[camp[i]]
        p = provs[prov[i]]
        h, comp, block = hard, complaint, 0.0
        if incident and incident["campaign"] in (c, None) and incident.get("provider") in (p, None) \
                and incident["start"] <= t < incident["end"]:
            h = incident.get("hard", h)
            comp = incident.get("complaint", comp)
            block = incident.get("block", 0.0)
        base = {"provider": "generic", "campaign": c, "recipient_domain": PROVIDER_DOMAINS[p],
                "mailbox_provider": p, "sending_domain": "news.example.com", "ip_pool": "pool-a",
                "recipient_hash": None, "message_id": f"m{seed}-{i}", "smtp_code": None, "reason": None}
        yield {**base, "event_id": f"e{seed}-{i}-a", "type": "accepted", "bounce_class": None, "timestamp": t}
        t2 = t + 1.0
        if u[i] < h:
            yield {**base, "event_id": f"e{seed}-{i}-b", "type": "bounced", "bounce_class": "hard",
                   "timestamp": t2, "smtp_code": 550, "reason": "5.1.1 user unknown"}
        elif u[i] < h + block:
            yield {**base, "event_id": f"e{seed}-{i}-k", "type": "bounced", "bounce_class": "block",
                   "timestamp": t2, "smtp_code": 421, "reason": "4.7.28 unusual rate of unsolicited mail"}
        else:
            yield {**base, "event_id": f"e{seed}-{i}-d", "type": "delivered", "bounce_class": None, "timestamp": t2}
            if u2[i] < comp:
                yield {**base, "event_id": f"e{seed}-{i}-c", "type": "complained", "bounce_class": None,
                       "timestamp": t2 + 5}
