"""How many messages a scope sent, when the stream may carry no send events.

SendGrid (``processed``), Mailgun (``accepted``) and SES event publishing (``Send``) post
an event when they take a message; Postmark, Mailjet, SES classic notifications and any
account subscribed to outcome webhooks only never do. Every gate that asks "is this scope
sending?" (``min_sends``, the sending gate of CUSUM charts) and every volume metric must
work on both.

Each scope learns its *send coverage* ``c``: the share of its delivery attempts
(deliveries + bounces) that came with a send event, ``min(1, accepted / attempts)`` over
the scope's history. A scope fed by one ESP that posts sends has ``c`` near 1, an
outcome-only scope ``c = 0``, a domain split between two such ESPs something between.
The part of the traffic without send events is represented by its attempts:

    sends = accepted + (1 - c) * attempts

so a pure send stream is unchanged, an outcome-only stream counts attempts, and a mixed
one adds the attempts of its silent share. Attempts lag sends (retries, throttling), which
is why send events are preferred where they exist.
"""
from __future__ import annotations

from typing import Sequence

from .counts import COUNTER_INDEX

_ACCEPTED = COUNTER_INDEX["accepted"]
_DELIVERED = COUNTER_INDEX["delivered"]
_BOUNCED = COUNTER_INDEX["bounced"]
_UNATTRIBUTED_ACCEPTED = COUNTER_INDEX["unattributed_accepted"]
_UNATTRIBUTED_ATTEMPTS = COUNTER_INDEX["unattributed_attempts"]
_FIRST_ATTEMPTS = COUNTER_INDEX["first_attempts"]
#: Histories are halved beyond this many attempts, so a scope whose ESP changes (or that
#: starts posting sends) re-learns its coverage within a few hundred thousand messages.
_HALF_LIFE_ATTEMPTS = 200_000


def attempts(counts: Sequence[int]) -> int:
    """Delivery attempts heard back about in one window: deliveries + bounces."""
    return counts[_DELIVERED] + counts[_BOUNCED]


def observe(st: dict, counts: Sequence[int]) -> None:
    """Add one delta's window counters to the scope's send/attempt history."""
    observe_totals(st, counts[_ACCEPTED], counts[_DELIVERED] + counts[_BOUNCED], counts[_FIRST_ATTEMPTS])


def observe_totals(st: dict, accepted: int, attempted: int, first_attempts: int) -> None:
    """:func:`observe` on counters already summed (over a delta's windows)."""
    get = st.get
    acc = get("acc", 0) + accepted
    att = get("att", 0) + attempted
    fa = get("fa", 0) + first_attempts
    if att > _HALF_LIFE_ATTEMPTS:
        acc, att, fa = acc // 2, att // 2, fa // 2
    st["acc"], st["att"], st["fa"] = acc, att, fa


def numbered(st: dict) -> bool:
    """Does the ESP number this scope's attempts on its outcomes (not only on its deferrals)?

    Then a message's first attempt marks its send: first attempts stand in for sends, and
    the retries that trail a bulk send are not mistaken for new mail."""
    return st.get("fa", 0) >= 0.5 * st.get("att", 0) > 0


def coverage(st: dict) -> float:
    """Share of the scope's attempts that came with a send event (0 when none ever did)."""
    acc, att = st.get("acc", 0), st.get("att", 0)
    if acc <= 0:
        return 0.0
    if att <= 0:
        return 1.0  # sends seen, outcomes not yet: a send stream that has just started
    return min(1.0, acc / att)


def coverage_numbered(st: dict) -> tuple[float, bool]:
    """``(coverage(st), numbered(st))`` in one read of the state."""
    get = st.get
    acc, att = get("acc", 0), get("att", 0)
    first = get("fa", 0) >= 0.5 * att > 0
    if acc <= 0:
        return 0.0, first
    if att <= 0:
        return 1.0, first
    c = acc / att
    return (c if c < 1.0 else 1.0), first


def observed(st: dict) -> bool:
    """Does this scope's stream carry send events at all?"""
    return coverage(st) > 0.0


def sends(counts: Sequence[int], cov: float, first: bool = False) -> int:
    """Messages the scope sent in one window: send events plus, for the share of its traffic
    that posts none, its first attempts (``first``: the ESP numbers attempts) or else all its
    delivery attempts."""
    acc = counts[_ACCEPTED]
    if cov >= 1.0:
        return acc
    stand_in = counts[_FIRST_ATTEMPTS] if first else counts[_DELIVERED] + counts[_BOUNCED]
    return acc + int(round((1.0 - cov) * stand_in))


def unattributed(counts: Sequence[int], cov: float) -> int:
    """Like :func:`sends`, for the messages that name no campaign."""
    acc = counts[_UNATTRIBUTED_ACCEPTED]
    if cov >= 1.0:
        return acc
    return acc + int(round((1.0 - cov) * counts[_UNATTRIBUTED_ATTEMPTS]))


def volume(metric_name: str, counts: Sequence[int], cov: float, first: bool = False) -> int:
    """The send volume a volume metric counts in one window."""
    return unattributed(counts, cov) if metric_name == "unattributed_volume" else sends(counts, cov, first)


def sending(counts: Sequence[int] | None, cov: float, ratio: float, first: bool = False) -> bool:
    """Is the scope sending, rather than only hearing back about an earlier send?

    Outcomes that trail a finished bulk send (retries that end in blocks, late bounces)
    come with few new sends beside them and are not a fair sample of the scope's traffic: a
    window whose sends so far are fewer than ``ratio`` times its attempts is not charted.
    Where no send events exist (``cov = 0``) but attempts are numbered, first attempts mark
    the sends and the gate works as with send events; where neither exists the gate cannot
    see a trailing tail and stays open. A mixed scope gates the share it can see.
    """
    if counts is None:
        return False
    return sends(counts, cov, first) >= ratio * (counts[_DELIVERED] + counts[_BOUNCED])
