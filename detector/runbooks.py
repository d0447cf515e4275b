"""Response steps attached to every alert, chosen by category.

The order is the incident-response order the project was built around: stop the fire,
measure the blast radius, notify only the affected, then watch the recovery.
"""
from __future__ import annotations

_COMMON_TAIL = (
    "Monitor recovery: watch inbox placement, bounces and complaints on the next sends to this scope "
    "before resuming full volume; this alert resolves by itself when the rate is back to baseline.",
)

RUNBOOKS: dict[str, tuple[str, ...]] = {
    "technical": (
        "Stop the fire: pause the campaign or sending stream for the affected scope "
        "(ESP pause hook or the ESP's UI); for a mailbox-provider block, slow or stop sends to that provider only.",
        "Measure the blast radius: count affected recipients and segments (see evidence.affected_recipients "
        "and the top SMTP codes/reasons); check other campaigns on the same sending domain and IP pool.",
        "Find the cause: hard bounces (5.1.1) point to an old or bought list; 421/4.7.x or 5.7.x blocks point "
        "to reputation or authentication (SPF, DKIM, DMARC); check blocklists and the ESP status page.",
        "Notify only affected subscribers, never from a no-reply address, and not at all if the incident was "
        "a send to an old or suppression list; tell the ESP contact if the block persists.",
    ) + _COMMON_TAIL,
    "compliance": (
        "Stop the fire: pause the campaign; a rate above a mailbox-provider or ESP policy line risks "
        "account review or suspension.",
        "Measure the blast radius: which campaigns and segments pushed the rate over the line, and for how long.",
        "Check list hygiene and consent records for the affected segment; make sure one-click unsubscribe works "
        "and unsubscribes are honoured within 48 hours (Gmail/Yahoo bulk-sender rules).",
        "Notify legal/compliance with the evidence attached; notify subscribers only if their data or consent "
        "was affected, never from a no-reply address.",
    ) + _COMMON_TAIL,
    "complaints": (
        "Stop the fire: pause the campaign that draws complaints (complaints arrive hours after delivery, so "
        "the damage keeps growing after the send).",
        "Measure the blast radius: which segment was targeted, how many recipients got it, was it the intended "
        "audience (wrong-segment sends are the usual cause).",
        "Suppress complainers immediately and review the segment definition and content with marketing.",
        "Notify only affected subscribers with an apology if the send was a mistake, never from a no-reply "
        "address; brief customer service before replies arrive.",
    ) + _COMMON_TAIL,
    "performance": (
        "Stop the fire: if volume surged, check for a runaway automation or duplicate trigger and pause it; "
        "if volume stopped, check the automation, its trigger, API keys and the ESP account status.",
        "Measure the blast radius: how many messages were missed or duplicated since the change.",
        "Inform the marketing analyst and the owner of the automated flow; replay missed triggers if the flow "
        "supports it.",
    ) + _COMMON_TAIL,
    "security": (
        "Stop the fire: rotate ESP API keys and SMTP credentials, pause affected sending streams.",
        "Measure the blast radius: which lists or addresses may have leaked (spam-trap hits, sends to "
        "never-mailed addresses, phishing reports).",
        "Notify security/IT and follow the data-incident procedure; notify affected people only as that "
        "procedure requires.",
    ) + _COMMON_TAIL,
}


def runbook(category: str) -> list[str]:
    return list(RUNBOOKS.get(category, RUNBOOKS["technical"]))
