"""Render simulated canonical events as the webhooks real ESPs post (for the live demo).

The demo must exercise the same path production does: an ESP's payload, authenticated
the ESP's way, parsed by the ingest server. So each simulated campaign's events are
turned back into its ESP's format and signed with demo credentials made at startup:

=========  ==========================================  =======================================
ESP        payload (one POST)                           authentication
=========  ==========================================  =======================================
sendgrid   JSON array of events (batch)                 ECDSA P-256 signature (Signed Event Webhook)
mailgun    ``{"signature", "event-data"}`` (one event)  HMAC-SHA256 over timestamp + token
postmark   one record (``RecordType``)                  HTTP Basic auth
sparkpost  JSON array of ``{"msys": {...}}`` (batch)    HTTP Basic auth
ses        canonical JSON array to ``/webhooks/generic``  HTTP Basic auth
=========  ==========================================  =======================================

SES posts through SNS, whose signatures are checked against AWS-hosted certificates
(``sns.<region>.amazonaws.com``) that a local demo cannot obtain, so SES campaigns go to
the generic endpoint, as an in-house bridge (SES -> Kinesis/SQS -> HTTP) would send them.

An ESP's format cannot carry everything the canonical event has; :data:`NOT_CARRIED`
lists what each one drops, and events of a type an ESP never reports (Postmark has no
"accepted" or "deferred" webhook) are not sent at all and are counted instead. Raw
recipient addresses exist only in memory, inside payloads bound for the local ingest
server, which reduces them to a keyed hash (``DEMO_HASH_KEY``) at the edge.
"""
from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import hmac
import json
import secrets
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .catalog import DOMAINS
from .table import DEMO_HASH_KEY, EventTable, synthetic_address

#: Simulated ESP -> ingest endpoint (``POST /webhooks/<endpoint>``).
ENDPOINT = {"sendgrid": "sendgrid", "mailgun": "mailgun", "postmark": "postmark", "sparkpost": "sparkpost",
            "ses": "generic"}
#: ESPs that post many events per request (the others post one event per request).
BATCHING = {"sendgrid", "sparkpost", "ses"}
#: Canonical fields each format cannot carry (what ingest will not recover).
NOT_CARRIED: dict[str, tuple[str, ...]] = {
    "sendgrid": ("sending_domain", "ip_pool (SendGrid names the pool on processed only)", "timestamp sub-second"),
    "mailgun": ("ip_pool", "soft bounce class (a permanent failure is parsed as hard)"),
    "postmark": ("accepted", "deferred", "dropped", "ip_pool", "sending_domain (From is on Bounce/SpamComplaint only)"),
    "sparkpost": ("smtp_code of deliveries", "timestamp sub-second"),
    "ses": (),
}

SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


# ----------------------------------------------------------------------------- input

@dataclass(frozen=True)
class SimEvent:
    """A canonical event plus the synthetic address it concerns (memory only)."""

    event: dict
    address: str


def iter_timed_events(table: EventTable) -> Iterator[tuple[float, SimEvent]]:
    """``(arrival, SimEvent)`` in table order, ready for :func:`sim.pace.paced`."""
    names = DOMAINS.names
    rids, doms = table.m_rid.tolist(), table.m_dom.tolist()
    for (arrival, event), msg in zip(table.iter_timed(), table.msg.tolist()):
        yield arrival, SimEvent(event, synthetic_address(rids[msg], names[doms[msg]]))


# ----------------------------------------------------------------------------- credentials

@dataclass
class DemoCredentials:
    """Webhook credentials made fresh for one demo run (never written to disk)."""

    sendgrid_key: ec.EllipticCurvePrivateKey = field(repr=False)
    mailgun_signing_key: str = field(repr=False)
    basic_user: str = "ddetect-demo"
    basic_password: str = field(default="", repr=False)

    @classmethod
    def generate(cls) -> "DemoCredentials":
        return cls(sendgrid_key=ec.generate_private_key(ec.SECP256R1()),
                   mailgun_signing_key=secrets.token_hex(16), basic_password=secrets.token_urlsafe(18))

    def sendgrid_public_key(self) -> str:
        """The verification key as SendGrid's UI shows it: base64 DER SubjectPublicKeyInfo."""
        der = self.sendgrid_key.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode()

    def ingest_env(self) -> dict[str, str]:
        """Environment for ``ddetect ingest`` that accepts exactly these credentials."""
        env = {"DDETECT_RECIPIENT_HASH_KEY": DEMO_HASH_KEY.decode(),
               "DDETECT_SENDGRID_SECRET": self.sendgrid_public_key(),
               "DDETECT_MAILGUN_SECRET": self.mailgun_signing_key}
        for provider in ("postmark", "sparkpost", "generic"):
            env[f"DDETECT_{provider.upper()}_BASIC_USER"] = self.basic_user
            env[f"DDETECT_{provider.upper()}_BASIC_PASSWORD"] = self.basic_password
        return env


def sendgrid_signature(key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """Base64 DER ECDSA signature over ``timestamp + body``, as SendGrid signs."""
    return base64.b64encode(key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))).decode()


def mailgun_signature(signing_key: str, timestamp: str, token: str) -> str:
    return hmac.new(signing_key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()


def basic_auth(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


# ----------------------------------------------------------------------------- helpers

def _seq(event_id: str) -> int:
    """A stable integer per event (Postmark bounce IDs are integers)."""
    tail = event_id.rsplit("-", 1)[-1]
    try:
        return int(tail, 16)
    except ValueError:
        return zlib.crc32(event_id.encode())


def _iso(ts: float) -> str:
    """Postmark's timestamps: ISO-8601 UTC, here with millisecond precision."""
    when = _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def _sender(ev: dict) -> str:
    return f"hello@{ev['sending_domain']}" if ev.get("sending_domain") else "hello@example.com"


def _enhanced(reason: str | None) -> str | None:
    """The RFC 3463 code in a reply text, e.g. ``5.1.1``."""
    if not reason:
        return None
    for token in reason.replace("-", " ").split():
        parts = token.split(".")
        if len(parts) == 3 and parts[0] in ("2", "4", "5") and all(p.isdigit() for p in parts):
            return token
    return None


# ----------------------------------------------------------------------------- SendGrid

_SG_EVENT = {"accepted": "processed", "delivered": "delivered", "deferred": "deferred", "dropped": "dropped",
             "bounced": "bounce", "opened": "open", "clicked": "click", "complained": "spamreport",
             "unsubscribed": "unsubscribe"}
#: bounce class -> (SendGrid ``type``, ``bounce_classification``) as the ingest parser reads them.
_SG_BOUNCE = {"hard": ("bounce", "Invalid Address"), "soft": ("bounce", "Technical Failure"),
              "block": ("blocked", "Reputation"), "undetermined": ("bounce", "Unclassified")}


def sendgrid_event(ev: dict, address: str) -> dict:
    out = {"email": address, "timestamp": int(ev["timestamp"]), "event": _SG_EVENT[ev["type"]],
           "sg_event_id": ev["event_id"], "sg_message_id": ev["message_id"],
           "smtp-id": f"<{ev['message_id']}@ismtpd-demo>", "category": [ev["campaign"]]}
    if ev.get("ip_pool"):
        out["pool"] = {"name": ev["ip_pool"], "id": zlib.crc32(ev["ip_pool"].encode()) % 1000}
    kind = ev["type"]
    if kind == "delivered":
        out["response"] = f"{ev['smtp_code'] or 250} OK"
    elif kind == "deferred":
        out["response"] = ev["reason"] or "400 try again later"
        out["attempt"] = str(ev.get("attempt") or 1)
    elif kind == "bounced":
        out["type"], out["bounce_classification"] = _SG_BOUNCE[ev["bounce_class"]]
        out["reason"] = ev["reason"] or ""
        out["status"] = _enhanced(ev["reason"]) or "5.0.0"
    elif kind == "dropped":
        out["reason"] = ev["reason"] or "Bounced Address"
        out["status"] = "5.0.0"
    elif kind in ("opened", "clicked"):
        out["useragent"] = "Mozilla/5.0 (demo)"
        out["ip"] = "192.0.2.1"
        if kind == "clicked":
            out["url"] = "https://example.com/offer"
    return out


# ----------------------------------------------------------------------------- Mailgun

_MG_EVENT = {"accepted": "accepted", "delivered": "delivered", "opened": "opened", "clicked": "clicked",
             "complained": "complained", "unsubscribed": "unsubscribed"}
_MG_SUPPRESS = {"Bounced Address": "suppress-bounce", "Unsubscribed Address": "suppress-unsubscribe",
                "Spam Reporting Address": "suppress-complaint"}


def mailgun_event(ev: dict, address: str) -> dict:
    kind = ev["type"]
    data = {"event": _MG_EVENT.get(kind, "failed"), "id": ev["event_id"], "timestamp": ev["timestamp"],
            "log-level": "info", "recipient": address, "recipient-domain": ev["recipient_domain"],
            "tags": [ev["campaign"]], "campaigns": [], "user-variables": {"campaign": ev["campaign"]},
            "flags": {"is-authenticated": True, "is-routed": False, "is-big": False, "is-test-mode": False},
            "message": {"headers": {"message-id": ev["message_id"], "from": _sender(ev), "to": address,
                                    "subject": "Demo message"}, "attachments": [], "size": 2048},
            "envelope": {"sender": _sender(ev), "targets": address, "transport": "smtp"}}
    if ev.get("sending_domain"):
        data["domain"] = {"name": ev["sending_domain"]}
    code, reason = ev.get("smtp_code"), ev.get("reason")
    status = {"code": code, "message": reason, "description": None, "attempt-no": ev.get("attempt") or 1,
              "enhanced-code": _enhanced(reason)}
    if kind == "delivered":
        data["delivery-status"] = {"code": code or 250, "message": "OK", "description": None,
                                   "attempt-no": ev.get("attempt") or 1, "tls": True}
    elif kind == "deferred":
        data.update({"severity": "temporary", "reason": "generic", "log-level": "warn",
                     "delivery-status": dict(status, **{"retry-seconds": 600})})
    elif kind == "bounced":
        bclass = ev["bounce_class"]
        data.update({"severity": "permanent", "log-level": "error",
                     "reason": "bounce" if bclass == "hard" else "generic",
                     "delivery-status": dict(status, **{"bounce-type": "hard" if bclass == "hard" else "soft"})})
    elif kind == "dropped":
        data.update({"severity": "permanent", "log-level": "error",
                     "reason": _MG_SUPPRESS.get(reason or "", "suppress-bounce"),
                     "delivery-status": {"code": 605, "message": reason, "description": reason,
                                         "attempt-no": 1, "enhanced-code": None}})
    return data


# ----------------------------------------------------------------------------- Postmark

_PM_BOUNCE = {"hard": ("HardBounce", 1, "Hard bounce"), "soft": ("SoftBounce", 4096, "Soft bounce/Undeliverable"),
              "block": ("Blocked", 100006, "ISP block"), "undetermined": ("Unknown", 2048, "Unknown")}


def postmark_record(ev: dict, address: str) -> dict | None:
    """One Postmark webhook record, or None: Postmark posts nothing for accepted,
    deferred (its retries are silent) or suppressed (rejected at the API) messages."""
    kind = ev["type"]
    common = {"ServerID": 4242, "MessageStream": "outbound", "MessageID": ev["message_id"],
              "Tag": ev["campaign"], "Metadata": {"campaign": ev["campaign"]}}
    ts = _iso(ev["timestamp"])
    if kind == "delivered":
        return {"RecordType": "Delivery", **common, "Recipient": address, "DeliveredAt": ts,
                "Details": f"smtp;{ev['smtp_code'] or 250} 2.0.0 OK"}
    if kind == "bounced":
        name, code, label = _PM_BOUNCE[ev["bounce_class"]]
        return {"RecordType": "Bounce", "ID": _seq(ev["event_id"]), "Type": name, "TypeCode": code, "Name": label,
                **common, "Description": label, "Details": ev["reason"] or "", "Email": address,
                "From": _sender(ev), "BouncedAt": ts, "DumpAvailable": False, "Inactive": code == 1,
                "CanActivate": True, "Subject": "Demo message"}
    if kind == "complained":
        return {"RecordType": "SpamComplaint", "ID": _seq(ev["event_id"]), "Type": "SpamComplaint",
                "TypeCode": 512, "Name": "Spam complaint", **common, "Email": address, "From": _sender(ev),
                "BouncedAt": ts, "Inactive": True, "CanActivate": False, "Subject": "Demo message"}
    if kind == "opened":
        return {"RecordType": "Open", **common, "Recipient": address, "ReceivedAt": ts, "FirstOpen": True,
                "Platform": "WebMail", "ReadSeconds": 5, "UserAgent": "Mozilla/5.0 (demo)"}
    if kind == "clicked":
        return {"RecordType": "Click", **common, "Recipient": address, "ReceivedAt": ts, "Platform": "Desktop",
                "ClickLocation": "HTML", "OriginalLink": "https://example.com/track", "UserAgent": "Mozilla/5.0"}
    if kind == "unsubscribed":
        return {"RecordType": "SubscriptionChange", **common, "Recipient": address, "ChangedAt": ts,
                "Origin": "Recipient", "SuppressSending": True, "SuppressionReason": "ManualSuppression"}
    return None


# ----------------------------------------------------------------------------- SparkPost

_SP_CLASS = {"accepted": ("message_event", "injection"), "delivered": ("message_event", "delivery"),
             "bounced": ("message_event", "bounce"), "deferred": ("message_event", "delay"),
             "dropped": ("message_event", "policy_rejection"), "complained": ("message_event", "spam_complaint"),
             "opened": ("track_event", "open"), "clicked": ("track_event", "click"),
             "unsubscribed": ("unsubscribe_event", "list_unsubscribe")}
#: bounce class -> SparkPost bounce_class category (Hard 10, Soft 20, Block 50, Undetermined 1).
_SP_BOUNCE = {"hard": "10", "soft": "20", "block": "50", "undetermined": "1"}


def sparkpost_event(ev: dict, address: str) -> dict:
    klass, kind = _SP_CLASS[ev["type"]]
    raw = {"type": kind, "event_id": ev["event_id"], "timestamp": str(int(ev["timestamp"])),
           "rcpt_to": address, "raw_rcpt_to": address, "campaign_id": ev["campaign"],
           "message_id": ev["message_id"], "transmission_id": str(zlib.crc32(ev["campaign"].encode())),
           "msg_from": _sender(ev), "friendly_from": _sender(ev), "customer_id": "4242",
           "rcpt_meta": {}, "rcpt_tags": [], "subject": "Demo message", "routing_domain": ev["recipient_domain"]}
    if ev.get("ip_pool"):
        raw["ip_pool"] = ev["ip_pool"]
    if ev.get("attempt") and ev["type"] in ("delivered", "bounced", "deferred"):
        raw["num_retries"] = str(ev["attempt"] - 1)
    if ev["type"] in ("bounced", "deferred", "dropped"):
        if ev.get("smtp_code"):
            raw["error_code"] = str(ev["smtp_code"])
        raw["reason"] = raw["raw_reason"] = ev["reason"] or ""
    if ev["type"] == "bounced":
        raw["bounce_class"] = _SP_BOUNCE[ev["bounce_class"]]
    elif ev["type"] == "dropped":
        raw["bounce_class"] = "25"
    elif ev["type"] == "deferred":
        raw.setdefault("num_retries", "1")
    elif ev["type"] == "complained":
        raw["fbtype"] = "abuse"
    elif ev["type"] == "clicked":
        raw["target_link_url"] = "https://example.com/offer"
    return {"msys": {klass: raw}}


# ----------------------------------------------------------------------------- generic (SES)

def generic_event(ev: dict, address: str) -> dict:
    """The canonical event with the raw address in place of the fields ingest derives from it."""
    out = {k: v for k, v in ev.items() if k not in ("recipient_domain", "recipient_hash", "mailbox_provider")}
    out["recipient"] = address
    return out


#: Simulated ESP -> per-event renderer (None = the ESP posts nothing for this event).
RENDERERS: dict[str, Callable[[dict, str], dict | None]] = {
    "sendgrid": sendgrid_event, "mailgun": mailgun_event, "postmark": postmark_record,
    "sparkpost": sparkpost_event, "ses": generic_event,
}


# ----------------------------------------------------------------------------- requests

@dataclass
class Webhook:
    """One HTTP request as the ESP would send it."""

    esp: str               # the simulated ESP
    endpoint: str          # POST /webhooks/<endpoint>
    body: bytes
    headers: dict[str, str]
    events: int            # canonical events it carries


class WebhookRenderer:
    """Turns batches of :class:`SimEvent` into signed :class:`Webhook` requests.

    ``clock`` stamps signatures (wall time: ingest checks it against its own clock,
    while event timestamps stay in simulated time). ``token`` makes Mailgun's one-time
    tokens (ingest rejects a reused one)."""

    def __init__(self, credentials: DemoCredentials, *, clock: Callable[[], float] = time.time,
                 token: Callable[[], str] = lambda: secrets.token_hex(25), max_batch: int = 500):
        self.credentials = credentials
        self.clock = clock
        self.token = token
        self.max_batch = max_batch
        self.not_carried: Counter = Counter()    # (esp, canonical type) -> events the ESP never posts

    def render(self, items: Iterable[SimEvent]) -> list[Webhook]:
        grouped: dict[str, list[dict]] = {}
        out: list[Webhook] = []
        for item in items:
            esp = item.event["provider"]
            payload = RENDERERS[esp](item.event, item.address)
            if payload is None:
                self.not_carried[(esp, item.event["type"])] += 1
                continue
            if esp in BATCHING:
                grouped.setdefault(esp, []).append(payload)
            else:
                out.append(self._request(esp, payload, 1))
        for esp, payloads in grouped.items():
            for lo in range(0, len(payloads), self.max_batch):
                chunk = payloads[lo:lo + self.max_batch]
                out.append(self._request(esp, chunk, len(chunk)))
        return out

    def _request(self, esp: str, payload, n: int) -> Webhook:
        creds = self.credentials
        headers = {"Content-Type": "application/json", "User-Agent": f"ddetect-demo/{esp}"}
        if esp == "mailgun":
            ts, token = str(int(self.clock())), self.token()
            payload = {"signature": {"timestamp": ts, "token": token,
                                     "signature": mailgun_signature(creds.mailgun_signing_key, ts, token)},
                       "event-data": payload}
        body = json.dumps(payload, separators=(",", ":")).encode()
        if esp == "sendgrid":
            ts = str(int(self.clock()))
            headers[SENDGRID_TIMESTAMP_HEADER] = ts
            headers[SENDGRID_SIGNATURE_HEADER] = sendgrid_signature(creds.sendgrid_key, ts, body)
        elif esp != "mailgun":
            headers["Authorization"] = basic_auth(creds.basic_user, creds.basic_password)
        return Webhook(esp, ENDPOINT[esp], body, headers, n)
