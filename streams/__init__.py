"""The live pipeline: Faust agents that feed Kafka events through the detector core.

Two stages, both batch-shaped so per-event Python work stays out of Faust:

1. ``count_events`` reads canonical events (one JSON object or an array per message),
   sends malformed input to the dead-letter topic, and counts each batch per
   (scope, window) with the vectorised :func:`detector.counts.aggregate`. It sends one
   message per partition of the ``scope-deltas`` topic: the deltas of the scopes that
   partition owns, plus the batch's newest event time (the watermark hint).
2. ``detect`` owns the per-scope state (a Faust table, changelogged) of its partitions
   and runs one :class:`detector.engine.Engine` per partition over it, publishing
   firing/resolved alerts.
"""
