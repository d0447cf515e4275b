"""SMTP replies the simulated mailbox providers give, per provider and outcome.

The texts follow the public wording of each provider's replies (Gmail's 4.7.28 rate
limit, Microsoft's S3150 block list, Yahoo's TSS04 deferral...), with the sending IP and
domain filled in. Addresses are never quoted: where a real server would echo the
recipient, the text leaves it out, as the ingest edge redacts it anyway.
``{ip}`` is the sending IP, ``{domain}`` the sending domain.
"""
from __future__ import annotations

from dataclasses import dataclass

#: outcome -> provider -> [(smtp_code, text, weight)]; provider "default" covers the rest.
REPLIES: dict[str, dict[str, list[tuple[int, str, float]]]] = {
    "hard": {
        "gmail": [(550, "550-5.1.1 The email account that you tried to reach does not exist. Please try "
                        "double-checking the recipient's email address for typos or unnecessary spaces. "
                        "For more information, go to https://support.google.com/mail/?p=NoSuchUser", 1.0)],
        "microsoft": [(550, "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302)", 0.7),
                      (550, "550 5.1.1 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP "
                            "address lookup", 0.3)],
        "yahoo": [(554, "554 delivery error: dd This user doesn't have a yahoo.com account [0] - "
                        "mta4460.mail.bf1.yahoo.com", 0.6),
                  (554, "554 delivery error: dd Sorry your message cannot be delivered. This mailbox is "
                        "disabled (554.30). [0] - mta4121.mail.gq1.yahoo.com", 0.4)],
        "apple": [(550, "550 5.1.1 unknown or illegal alias", 1.0)],
        "default": [(550, "550 5.1.1 User unknown", 0.6),
                    (550, "550 5.1.1 Recipient address rejected: User unknown in virtual mailbox table", 0.4)],
    },
    "soft": {
        "gmail": [(452, "452-4.2.2 The recipient's inbox is out of storage space. Please direct the "
                        "recipient to https://support.google.com/mail/?p=OverQuotaTemp", 1.0)],
        "microsoft": [(452, "452 4.2.2 Mailbox full. The recipient's mailbox is full and can't accept "
                            "messages now", 1.0)],
        "yahoo": [(452, "452 4.2.2 Mailbox full", 1.0)],
        "apple": [(452, "452 4.2.2 mailbox full", 1.0)],
        "default": [(452, "452 4.2.2 Mailbox full", 0.7),
                    (552, "552 5.2.2 Mailbox quota exceeded", 0.3)],
    },
    "block": {
        "gmail": [(421, "421-4.7.28 [{ip}] Gmail has detected an unusual rate of unsolicited mail "
                        "originating from your IP address. To protect our users from spam, mail sent from "
                        "your IP address has been temporarily rate limited. For more information, go to "
                        "https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our Bulk "
                        "Email Senders Guidelines.", 0.6),
                  (550, "550-5.7.1 [{ip}] Gmail has detected that this message is likely unsolicited mail. "
                        "To reduce the amount of spam sent to Gmail, this message has been blocked. For more "
                        "information, go to https://support.google.com/mail/?p=UnsolicitedMessageError", 0.4)],
        "microsoft": [(550, "550 5.7.1 Unfortunately, messages from [{ip}] weren't sent. Please contact "
                            "your Internet service provider since part of their network is on our block "
                            "list (S3150). You can also refer your provider to "
                            "http://mail.live.com/mail/troubleshooting.aspx#errors.", 0.6),
                      (550, "550 5.7.1 Service unavailable, Client host [{ip}] blocked using Spamhaus. "
                            "To request removal from this list see https://www.spamhaus.org/query/ip/{ip} "
                            "(AS3130).", 0.4)],
        "yahoo": [(421, "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected "
                        "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
                   0.7),
                  (554, "554 5.7.9 Message not accepted for policy reasons. See "
                        "https://postmaster.yahooinc.com/error-codes", 0.3)],
        "apple": [(554, "554 5.7.1 [CS01] Message rejected due to local policy. Please visit "
                        "https://support.apple.com/en-us/HT204137", 1.0)],
        "default": [(554, "554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org",
                     0.6),
                    (550, "550 5.7.1 Message rejected as spam by Content Filtering", 0.4)],
    },
    "defer": {  # ordinary temporary failures, retried and then delivered
        "gmail": [(421, "421-4.3.0 Temporary System Problem. Try again later.", 0.5),
                  (450, "450-4.2.1 The user you are trying to contact is receiving mail at a rate that "
                        "prevents additional messages from being delivered. Please resend your message at "
                        "a later time.", 0.5)],
        "microsoft": [(451, "451 4.7.650 The mail server [{ip}] has been temporarily rate limited due to IP "
                            "reputation. For e-mail delivery information, see https://postmaster.live.com "
                            "(S775)", 0.6),
                      (451, "451 4.4.4 Temporary server error. Please try again later ATTR12", 0.4)],
        "yahoo": [(421, "421 4.7.0 [TSS04] Messages from {ip} temporarily deferred due to unexpected "
                        "volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
                   0.8),
                  (451, "451 Message temporarily deferred - [160]", 0.2)],
        "apple": [(451, "451 4.7.1 Please try again later", 1.0)],
        "default": [(451, "451 4.7.1 Greylisting in action, please come back later", 0.5),
                    (421, "421 4.4.2 Connection timed out", 0.5)],
    },
}

#: When a provider is blocking, the retries it defers carry its blocking reply.
THROTTLE = {
    "gmail": (421, REPLIES["block"]["gmail"][0][1]),
    "microsoft": (451, REPLIES["defer"]["microsoft"][0][1]),
    "yahoo": (421, REPLIES["block"]["yahoo"][0][1]),
    "apple": (451, REPLIES["defer"]["apple"][0][1]),
    "default": (421, "421 4.7.0 Too many connections from {ip}, try again later"),
}

#: ESP-side drops (suppression lists): no SMTP exchange, so no code.
DROP_REASONS: tuple[tuple[str, float], ...] = (
    ("Bounced Address", 0.6), ("Unsubscribed Address", 0.3), ("Spam Reporting Address", 0.1),
)


@dataclass(frozen=True)
class Reply:
    code: int
    template: str


def replies_for(outcome: str, provider: str) -> tuple[list[Reply], list[float]]:
    """Templates and weights for one outcome at one provider (falls back to ``default``)."""
    table = REPLIES[outcome]
    rows = table.get(provider, table["default"])
    total = sum(w for _, _, w in rows)
    return [Reply(c, t) for c, t, _ in rows], [w / total for _, _, w in rows]
