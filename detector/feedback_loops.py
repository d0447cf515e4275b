"""Which mailbox providers report complaints message by message (feedback loops).

A complaint event exists only where the recipient's mailbox provider runs a per-message
feedback loop (FBL) and the sender is enrolled in it. Gmail runs none (its FBL gives
aggregate spam rates per ``Feedback-ID`` in Postmaster Tools, support.google.com/mail/
answer/6254652), nor do Apple's iCloud or most corporate servers: a complaint rate over all
deliveries would read low by the share of such mail, and Amazon SES computes its complaint
rate over mail to FBL-providing domains only. So ``complaint_rate`` counts complaints and
deliveries at the providers of this table only.

The table is the default; a rule file's top-level ``feedback_loops:`` list replaces it (names
as :func:`detector.mailbox.mailbox_provider` returns them). ``ddetect doctor`` lists the
providers outside it that posted complaints anyway (add them) and the share of deliveries no
complaint rule can see.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

#: Mailbox providers with a per-message complaint feedback loop, and where it is documented.
FEEDBACK_LOOP_TABLE: dict[str, str] = {
    "yahoo": "Yahoo Complaint Feedback Loop (senders.yahooinc.com); covers AOL and Verizon domains",
    "microsoft": "Outlook.com Junk Mail Reporting Program, JMRP (sendersupport.olc.protection.outlook.com)",
    "comcast": "Comcast feedback loop (through Validity's Universal FBL)",
    "gmx": "GMX / WEB.DE (United Internet) feedback loop",
    "yandex": "Yandex feedback loop for DKIM-signed mail (yandex.com/support/postoffice)",
    "mailru": "Mail.ru feedback loop (postmaster.mail.ru)",
    "orange": "Orange feedback loop (assumed, as the simulator does: confirm for your account)",
}
FEEDBACK_LOOPS: frozenset[str] = frozenset(FEEDBACK_LOOP_TABLE)


def flags(providers: Sequence[str], loops: Iterable[str] = FEEDBACK_LOOPS) -> np.ndarray:
    """Per mailbox-provider code (the index into ``providers``): does it report complaints?"""
    loops = loops if isinstance(loops, (set, frozenset)) else frozenset(loops)
    return np.fromiter((p in loops for p in providers), dtype=bool, count=len(providers))
