"""ESP webhook ingestion: authenticate, normalise to canonical events, produce to Kafka.

Modules: ``config`` (settings), ``providers/`` (one normaliser per ESP), ``auth/`` (one module
per signature scheme), ``dedup`` (redelivery filter), ``producer`` (aiokafka, acks=all, one
JSON-array message per request), ``fastjson`` (orjson when installed), ``server`` (aiohttp
app), ``normalize`` (the ``ddetect normalize`` debugging aid).
"""
