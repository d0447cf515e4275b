"""Generic JSON webhook, signed: ``X-Ddetect-Signature: sha256=HEX(HMAC-SHA256(secret, timestamp + "." + body))``.

Signing the timestamp with the body (and sending it in ``X-Ddetect-Timestamp``) lets the receiver reject
replays older than a few minutes, the same scheme Stripe and Slack use for their own webhooks.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time

from alerting.receivers.base import Notifier

SIGNATURE_HEADER = "X-Ddetect-Signature"
TIMESTAMP_HEADER = "X-Ddetect-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, now: float | None = None,
           tolerance: float = 300.0) -> bool:
    """Receiver side check (used by tests and by the pause hook's docs)."""
    try:
        fresh = abs((time.time() if now is None else now) - int(timestamp)) <= tolerance
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


class WebhookNotifier(Notifier):
    kind = "webhook"

    async def notify(self, alert, session, group=None):
        body = json.dumps({"version": "1", "status": alert.get("status"), "alert": alert},
                          separators=(",", ":"), sort_keys=True).encode()
        ts = str(int(time.time()))
        headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(self.secrets["secret"].reveal(), ts, body),
                   "Idempotency-Key": f"{alert.get('alert_id')}:{alert.get('status')}"}
        await self.post_json(session, self.secrets["url"].reveal(), None, headers, data=body)
