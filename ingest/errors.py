"""Errors the edge turns into HTTP answers.

Messages are shown to the ESP, written to the DLQ reason and logged, so they must never
carry a recipient address: build them from field names, never from field values, and
pass anything external through :func:`ingest.privacy.redact`.
"""
from __future__ import annotations


class PayloadError(ValueError):
    """The body cannot be normalised (400, raw payload to the DLQ)."""


class UnsupportedMediaType(PayloadError):
    """Wrong Content-Type for this provider (415)."""


class AuthError(Exception):
    """Authentication failed. ``status`` is 401 (missing credentials) or 403 (wrong ones);
    ``reason`` is a short closed-set code used as a metric label."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
