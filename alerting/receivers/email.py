"""SMTP email with the stdlib ``smtplib``, run in a worker thread so it never blocks the event loop.

SMTP reply classes map onto our retry taxonomy: 4xx is transient (retry), 5xx is permanent (dead letter).
Resolved mails thread under the firing mail via ``In-Reply-To`` so the inbox shows one conversation per incident.
"""
from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from alerting import render
from alerting.receivers.base import Notifier, PermanentError, RetryableError


def _message_id(alert: dict, status: str, domain: str) -> str:
    digest = hashlib.sha256(f"{alert.get('dedup_key')}|{alert.get('alert_id')}|{status}".encode()).hexdigest()[:32]
    return f"<{digest}@{domain}>"


def email_message(alert: dict, sender: str, to: list[str], dashboard_url: str | None = None,
                  router_url: str | None = None) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = f"{render.title(alert)} {render.where(alert)}"[:200]
    msg["From"] = sender
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(usegmt=True)
    domain = sender.rpartition("@")[2] or "ddetect.local"
    msg["Message-ID"] = _message_id(alert, str(alert.get("status")), domain)
    if render.is_resolved(alert):
        msg["In-Reply-To"] = msg["References"] = _message_id(alert, "firing", domain)
    msg["X-Ddetect-Dedup-Key"] = str(alert.get("dedup_key"))
    msg.set_content(render.plain_text(alert, dashboard_url, router_url))
    return msg


class EmailNotifier(Notifier):
    kind = "email"

    def _send_blocking(self, msg: EmailMessage) -> None:
        s = self.integration.settings
        host, _, port = s["smarthost"].rpartition(":")
        try:
            with smtplib.SMTP(host, int(port), local_hostname=s.get("hello"), timeout=self.timeout) as smtp:
                if s.get("starttls"):
                    smtp.starttls(context=ssl.create_default_context())
                if "password" in self.secrets:
                    smtp.login(s.get("username", ""), self.secrets["password"].reveal())
                smtp.send_message(msg)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            cls = RetryableError if any(400 <= c < 500 for c in codes) else PermanentError
            raise cls(f"email: recipients refused {sorted(set(codes))}") from None
        except smtplib.SMTPResponseException as exc:
            cls = RetryableError if 400 <= exc.smtp_code < 500 else PermanentError
            raise cls(f"email: SMTP {exc.smtp_code}", exc.smtp_code) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise RetryableError(f"email: {type(exc).__name__}") from None

    async def notify(self, alert, session, group=None):
        s = self.integration.settings
        msg = email_message(alert, s["from"], s["to"], self.ctx.dashboard_url, self.ctx.router_url)
        await asyncio.to_thread(self._send_blocking, msg)
