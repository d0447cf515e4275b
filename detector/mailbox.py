"""Mailbox provider from a recipient domain.

Pooled rates hide one provider blocking you, so every scope can be split by the provider
that hosts the mailbox. The mapping is a plain dict: extend it with
:func:`register_domains` (or the ``mailbox_providers`` section of a rule file) for
regional or corporate domains. Unknown domains map to ``other``; subdomains match their
parent (``mail.yahoo.co.jp`` -> ``yahoo``).
"""
from __future__ import annotations

from typing import Iterable

DOMAIN_TO_PROVIDER: dict[str, str] = {}

_BUILTIN = {
    "gmail": ["gmail.com", "googlemail.com", "google.com"],
    "yahoo": ["yahoo.com", "ymail.com", "rocketmail.com", "yahoo.co.uk", "yahoo.fr", "yahoo.de",
              "yahoo.co.jp", "yahoo.com.br", "yahoo.co.in", "yahoo.es", "yahoo.it", "aol.com",
              "aim.com", "verizon.net", "att.net", "sbcglobal.net", "bellsouth.net"],
    "microsoft": ["outlook.com", "hotmail.com", "live.com", "msn.com", "hotmail.co.uk",
                  "hotmail.fr", "live.co.uk", "outlook.fr", "outlook.de", "passport.com"],
    "apple": ["icloud.com", "me.com", "mac.com"],
    "proton": ["proton.me", "protonmail.com", "pm.me"],
    "gmx": ["gmx.com", "gmx.de", "gmx.net", "web.de", "mail.com"],
    "yandex": ["yandex.ru", "yandex.com", "ya.ru"],
    "mailru": ["mail.ru", "bk.ru", "inbox.ru", "list.ru"],
    "comcast": ["comcast.net", "xfinity.com"],
    "orange": ["orange.fr", "wanadoo.fr"],
    "qq": ["qq.com", "foxmail.com"],
    "zoho": ["zoho.com", "zohomail.com"],
}


def register_domains(provider: str, domains: Iterable[str]) -> None:
    """Map more recipient domains to ``provider`` (later registrations win)."""
    for domain in domains:
        DOMAIN_TO_PROVIDER[domain.strip().lower()] = provider


for _provider, _domains in _BUILTIN.items():
    register_domains(_provider, _domains)


def mailbox_provider(domain: str) -> str:
    """Return the provider for a recipient domain, matching parent domains too."""
    domain = domain.strip().lower().rstrip(".")
    while domain:
        hit = DOMAIN_TO_PROVIDER.get(domain)
        if hit is not None:
            return hit
        _, _, domain = domain.partition(".")
    return "other"
