"""Alert routing and delivery: routing tree, receivers, delivery ledger, escalation, router service.

The detection engine writes alerts to the ``deliverability-alerts`` topic; this package decides who must see
each alert (:mod:`alerting.routing`), delivers it exactly once per receiver and incident
(:mod:`alerting.dispatcher`, :mod:`alerting.ledger`), and escalates unacknowledged critical alerts
(:mod:`alerting.escalation`).
"""
