"""The simulated world's fixed vocabulary: recipient domains, mailbox-provider mix, senders.

Numbers here are the simulator's assumptions, kept in one place so they can be read and
argued with. Provider shares follow the usual B2C list mix (gmail ~45%, microsoft ~20%,
yahoo ~12%, apple ~10%, the rest regional providers and corporate domains). Corporate
domains are Microsoft's documented fictitious company names, so no real company's
traffic is imitated; every recipient address is synthetic and never leaves memory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from detector.feedback_loops import FEEDBACK_LOOPS
from detector.mailbox import mailbox_provider

#: Share of recipients per provider group (sums to 1).
PROVIDER_SHARE: dict[str, float] = {
    "gmail": 0.45, "microsoft": 0.20, "yahoo": 0.12, "apple": 0.10,
    "comcast": 0.02, "gmx": 0.02, "orange": 0.01, "proton": 0.01, "yandex": 0.005,
    "mailru": 0.005, "qq": 0.005, "other": 0.055,
}

#: Recipient domains per provider with their weight inside the provider.
DOMAINS_BY_PROVIDER: dict[str, list[tuple[str, float]]] = {
    "gmail": [("gmail.com", 0.98), ("googlemail.com", 0.02)],
    "microsoft": [("hotmail.com", 0.42), ("outlook.com", 0.34), ("live.com", 0.12), ("msn.com", 0.07),
                  ("hotmail.co.uk", 0.05)],
    "yahoo": [("yahoo.com", 0.52), ("aol.com", 0.20), ("ymail.com", 0.05), ("yahoo.co.uk", 0.05),
              ("att.net", 0.06), ("sbcglobal.net", 0.06), ("verizon.net", 0.06)],
    "apple": [("icloud.com", 0.80), ("me.com", 0.15), ("mac.com", 0.05)],
    "comcast": [("comcast.net", 1.0)],
    "gmx": [("gmx.de", 0.4), ("web.de", 0.4), ("gmx.com", 0.2)],
    "orange": [("orange.fr", 0.7), ("wanadoo.fr", 0.3)],
    "proton": [("proton.me", 0.6), ("protonmail.com", 0.4)],
    "yandex": [("yandex.ru", 1.0)],
    "mailru": [("mail.ru", 1.0)],
    "qq": [("qq.com", 1.0)],
    "other": [("contoso.com", 0.22), ("fabrikam.com", 0.18), ("northwindtraders.com", 0.14),
              ("adventure-works.com", 0.12), ("wingtiptoys.com", 0.10), ("tailspintoys.com", 0.09),
              ("litwareinc.com", 0.08), ("woodgrovebank.com", 0.07)],
}

#: Providers that send per-message complaint reports (feedback loops): the detector's default
#: table. Gmail sends none (only aggregate rates in Postmaster Tools), nor do Apple or
#: corporate servers, so a complaint event can only come from these.
FBL_PROVIDERS = FEEDBACK_LOOPS

#: Baseline multipliers per provider (1.0 = campaign rate). Yahoo/AOL lists age worst,
#: Microsoft blocks and defers most readily, corporate mailboxes disappear with jobs.
PROVIDER_FACTORS: dict[str, dict[str, float]] = {
    "gmail": {"hard": 0.9, "soft": 0.8, "block": 0.8, "defer": 0.6},
    "microsoft": {"hard": 1.1, "soft": 1.0, "block": 1.6, "defer": 1.5},
    "yahoo": {"hard": 1.5, "soft": 1.5, "block": 1.2, "defer": 2.0},
    "apple": {"hard": 0.8, "soft": 0.9, "block": 0.7, "defer": 0.8},
    "other": {"hard": 1.4, "soft": 1.2, "block": 1.0, "defer": 1.0},
}
#: Apple Mail Privacy Protection pre-fetches images: most delivered mail "opens" within minutes.
APPLE_MPP_OPEN_RATE = 0.75


@dataclass(frozen=True)
class Domains:
    """The recipient-domain table as parallel arrays (index = domain code)."""

    names: tuple[str, ...]
    provider: tuple[str, ...]         # mailbox_provider() of each domain (detector's mapping)
    group: tuple[str, ...]            # key of PROVIDER_SHARE the domain was drawn from
    weight: np.ndarray                # global probability of each domain
    fbl: np.ndarray                   # bool: complaints are reported

    def index(self, name: str) -> int:
        return self.names.index(name)


def build_domains() -> Domains:
    names, provider, group, weight = [], [], [], []
    for grp, share in PROVIDER_SHARE.items():
        for name, w in DOMAINS_BY_PROVIDER[grp]:
            names.append(name)
            provider.append(mailbox_provider(name))
            group.append(grp)
            weight.append(share * w)
    weight_arr = np.asarray(weight, dtype=float)
    weight_arr /= weight_arr.sum()
    fbl = np.array([p in FBL_PROVIDERS for p in provider], dtype=bool)
    return Domains(tuple(names), tuple(provider), tuple(group), weight_arr, fbl)


DOMAINS = build_domains()


def provider_factor(kind: str) -> np.ndarray:
    """Per-domain multiplier for one outcome kind (hard, soft, block, defer)."""
    return np.array([PROVIDER_FACTORS.get(p, PROVIDER_FACTORS["other"])[kind] for p in DOMAINS.provider])


@dataclass(frozen=True)
class Sender:
    """A sending identity: ESP, sending domain and IP pool (with its documentation-range IPs)."""

    esp: str
    sending_domain: str
    ip_pool: str
    ips: tuple[str, ...]


SENDERS: dict[str, Sender] = {
    "northwind-marketing": Sender("sendgrid", "news.northwind-outdoor.com", "mkt-shared",
                                  ("198.51.100.21", "198.51.100.22", "198.51.100.23")),
    "northwind-triggered": Sender("mailgun", "news.northwind-outdoor.com", "mkt-shared",
                                  ("198.51.100.21", "198.51.100.22", "198.51.100.23")),
    "northwind-transactional": Sender("postmark", "notify.northwind-outdoor.com", "txn-dedicated",
                                      ("203.0.113.10", "203.0.113.11")),
    "fabrikam-marketing": Sender("sparkpost", "email.fabrikam-home.com", "mkt-dedicated-2",
                                 ("198.51.100.40", "198.51.100.41")),
    "fabrikam-transactional": Sender("ses", "mail.fabrikam-home.com", "txn-shared",
                                     ("203.0.113.50", "203.0.113.51", "203.0.113.52")),
}

#: Steady flows: (campaign, kind, sender, messages per hour at scale 1).
STEADY_FLOWS: tuple[tuple[str, str, str, float], ...] = (
    ("welcome-series", "triggered", "northwind-triggered", 900.0),
    ("abandoned-cart", "triggered", "northwind-triggered", 1500.0),
    ("win-back", "triggered", "northwind-triggered", 400.0),
    ("browse-abandonment", "triggered", "fabrikam-marketing", 700.0),
    ("post-purchase-review", "triggered", "fabrikam-marketing", 500.0),
    ("order-confirmation", "transactional", "northwind-transactional", 4000.0),
    ("shipping-update", "transactional", "northwind-transactional", 3500.0),
    ("password-reset", "transactional", "fabrikam-transactional", 1200.0),
    ("receipt", "transactional", "fabrikam-transactional", 2500.0),
    ("login-code", "transactional", "fabrikam-transactional", 2000.0),
)

#: Bulk newsletter names (a date suffix makes each send its own campaign) and senders.
BULK_NAMES: tuple[tuple[str, str], ...] = (
    ("weekly-digest", "northwind-marketing"),
    ("summer-sale", "northwind-marketing"),
    ("new-arrivals", "fabrikam-marketing"),
    ("members-newsletter", "northwind-marketing"),
    ("flash-sale", "fabrikam-marketing"),
    ("style-guide", "fabrikam-marketing"),
)
BULK_MEDIAN_SIZE = 80_000        # recipients per bulk send at scale 1
BULK_THROUGHPUT_PER_HOUR = 150_000.0
