"""Which temporary failures mean "this provider is throttling or blocking you".

Most deferrals are routine: greylisting ("451 4.7.1 please try again later"), a full or busy
mailbox, a timeout. A few are the provider pushing back on the sender: Gmail's 421-4.7.28
("unusual rate of unsolicited mail"), Yahoo's TSS04/TSS09 ("temporarily deferred due to
unexpected volume or user complaints"), Microsoft's 451 4.7.650-652 ("rate limited due to IP
reputation"), authentication failures that Gmail and Yahoo defer before they reject. When most
of a domain's first attempts get one of these, the provider is blocking it, minutes before the
retries end in block bounces. Patterns follow the providers' published error pages
(support.google.com/mail/answer/3726730, senders.yahooinc.com/smtp-error-codes,
learn.microsoft.com/.../non-delivery-reports-in-exchange-online); anything unmatched falls to
the generic words, and routine wording wins over them.
"""
from __future__ import annotations

import re
from functools import lru_cache

#: Per mailbox provider: reply patterns that mean throttling or a block.
PROVIDER_THROTTLE: dict[str, tuple[str, ...]] = {
    "gmail": (r"4\.7\.28", r"4\.7\.2[67]", r"4\.7\.3[02]", r"unsolicited", r"suspicious",
              r"rate limit"),
    "yahoo": (r"\bTSS0[49]\b", r"\bTS0[0-3]\b", r"user complaints", r"unexpected volume"),
    "microsoft": (r"4\.7\.65[0-2]", r"\bS3(1[0-9]{2})\b", r"IP reputation", r"rate limited"),
    "apple": (r"\bCS0[1-9]\b", r"HM0[0-9]", r"rate limit"),
}
#: Any provider: generic wording of throttling or a reputation block.
GENERIC_THROTTLE = (r"throttl", r"rate[- ]limit", r"too many (connections|messages|recipients)",
                    r"unsolicited", r"reputation", r"spamhaus|blocklist|blacklist|block list",
                    r"policy", r"\bblocked\b")
#: Routine temporary failures, never throttling on their own.
ROUTINE = (r"greylist|graylist", r"mailbox (is )?full|over quota|out of storage", r"4\.2\.2\b",
           r"4\.2\.1\b.*receiving mail at a rate",  # one recipient gets too much mail
           r"connection timed out|timeout", r"temporary (system|server) (problem|error)",
           r"4\.4\.\d")

_COMPILED = {p: re.compile("|".join(pats), re.IGNORECASE) for p, pats in PROVIDER_THROTTLE.items()}
_GENERIC = re.compile("|".join(GENERIC_THROTTLE), re.IGNORECASE)
_ROUTINE = re.compile("|".join(ROUTINE), re.IGNORECASE)


@lru_cache(maxsize=4096)
def is_throttle(mailbox_provider: str | None, smtp_code: int | None, reason: str | None) -> bool:
    """Does this deferral say the provider is throttling or blocking the sender?"""
    text = f"{smtp_code or ''} {reason or ''}"
    specific = _COMPILED.get(mailbox_provider or "")
    if specific is not None and specific.search(text):
        return True
    if _ROUTINE.search(text):
        return False
    return bool(_GENERIC.search(text))
