"""Make faust-streaming 0.11.3 talk to aiokafka >= 0.12 and Kafka 4.x.

Faust creates topics with aiokafka's old per-version request structs
(``MetadataRequest_v1``, ``CreateTopicsRequest[1]``); aiokafka >= 0.12 only ships
version-negotiating request classes, and Kafka 4 rejects CreateTopics v1. Handing Faust
the negotiating classes fixes both (found while verifying the broker recipe).
"""
from __future__ import annotations

_patched = False


def patch_faust_aiokafka() -> None:
    global _patched
    if _patched:
        return
    import faust.transport.drivers.aiokafka as faust_aiokafka
    from aiokafka.protocol.admin import CreateTopicsRequest
    from aiokafka.protocol.metadata import MetadataRequest

    class _AnyVersion:
        def __getitem__(self, version):
            return CreateTopicsRequest

    faust_aiokafka.MetadataRequest_v1 = MetadataRequest
    faust_aiokafka.CreateTopicsRequest = _AnyVersion()
    _patched = True
