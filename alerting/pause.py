"""Optional "stop the fire": pause the sending stream when a critical alert fires. Dry-run unless configured.

Pausing mail is drastic, so the default only logs what it *would* do; every action (dry or real, success or
failure) is logged at WARNING with the alert's dedup_key, and done at most once per alert (ledger-keyed).
Kinds: ``webhook`` (signed POST to your own pause endpoint) and ``sendgrid`` (pause a scheduled-send batch,
``POST /v3/user/scheduled_sends {"batch_id", "status": "pause"}``; the batch id comes from a scope label).
"""
from __future__ import annotations

import json
import logging
import time

from alerting.config import StopTheFire
from alerting.ledger import Ledger
from alerting.receivers.base import DeliveryError, Notifier, RenderContext
from alerting.receivers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

log = logging.getLogger("alerting.pause")
LEDGER_RECEIVER = "stop_the_fire"


class _Poster(Notifier):
    kind = "pause"


class PauseHook:
    def __init__(self, cfg: StopTheFire, ledger: Ledger, session, environ=None, clock=time.time):
        from alerting.config import Integration
        self.cfg = cfg
        self.ledger = ledger
        self.session = session
        self.clock = clock
        self.poster = _Poster(Integration(LEDGER_RECEIVER, cfg.kind, 0, cfg.settings), RenderContext(), environ)

    def request(self, alert: dict) -> tuple[str, dict, dict] | None:
        """(url, headers, body) of the pause call, or None when the alert does not say what to pause."""
        s, scope = self.cfg.settings, alert.get("scope") or {}
        if self.cfg.kind == "webhook":
            body = {"action": "pause", "dedup_key": alert["dedup_key"], "alert_id": alert["alert_id"],
                    "scope": scope, "reason": alert.get("summary"), "dry_run": self.cfg.dry_run}
            return self.poster.secrets["url"].reveal(), {}, body
        batch = scope.get(s["batch_id_label"])
        if not batch:
            return None
        return (s["api_url"].rstrip("/") + "/v3/user/scheduled_sends",
                {"Authorization": f"Bearer {self.poster.secrets['api_key'].reveal()}"},
                {"batch_id": str(batch), "status": "pause"})

    async def maybe_pause(self, alert: dict, labels: dict[str, str]) -> str:
        """Returns what happened: not_matched | already_done | no_target | dry_run | paused | failed."""
        if alert.get("status") != "firing" or not all(m.matches(labels) for m in self.cfg.matchers):
            return "not_matched"
        key = (LEDGER_RECEIVER, alert["dedup_key"], "firing", alert["alert_id"])
        row = self.ledger.get(*key)
        if row is not None and row.state in ("delivered", "dead", "suppressed"):
            return "already_done"
        req = self.request(alert)
        if req is None:
            log.warning("stop_the_fire %s: %s has no %s scope label; nothing to pause", self.cfg.kind,
                        alert["dedup_key"], self.cfg.settings.get("batch_id_label"))
            self.ledger.mark(*key, "suppressed", self.clock(), reason="no pause target")
            return "no_target"
        url, headers, body = req
        if self.cfg.dry_run:
            log.warning("stop_the_fire DRY RUN (%s): would pause %s for %s", self.cfg.kind,
                        json.dumps(body.get("scope", body.get("batch_id"))), alert["dedup_key"])
            self.ledger.mark(*key, "suppressed", self.clock(), reason="dry_run")
            return "dry_run"
        data = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        if self.cfg.kind == "webhook":
            ts = str(int(self.clock()))
            headers = {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: sign(self.poster.secrets["secret"].reveal(), ts, data)}
        try:
            await self.poster.post_json(self.session, url, None, headers, data=data)
        except DeliveryError as exc:
            log.error("stop_the_fire %s FAILED for %s: %s", self.cfg.kind, alert["dedup_key"], exc)
            self.ledger.mark(*key, "dead", self.clock(), reason=str(exc))
            return "failed"
        log.warning("stop_the_fire %s: paused %s for %s", self.cfg.kind,
                    json.dumps(body.get("scope", body.get("batch_id"))), alert["dedup_key"])
        self.ledger.mark(*key, "delivered", self.clock())
        return "paused"
