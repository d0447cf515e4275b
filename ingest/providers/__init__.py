"""One normaliser module per ESP; :data:`PROVIDERS` maps the URL name to the module."""
from __future__ import annotations

from types import ModuleType

from . import (brevo, generic, mailersend, mailgun, mailjet, mandrill, postmark, resend, sendgrid, ses,
               sparkpost)

PROVIDERS: dict[str, ModuleType] = {m.NAME: m for m in (
    sendgrid, mailgun, postmark, ses, sparkpost, mandrill, brevo, resend, mailersend, mailjet, generic)}


def get_provider(name: str) -> ModuleType:
    try:
        return PROVIDERS[name]
    except KeyError:
        raise KeyError(f"unknown provider {name!r} (known: {', '.join(PROVIDERS)})") from None
