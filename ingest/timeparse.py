"""Event time to Unix seconds, whatever the provider sent.

Providers mix integer seconds, float seconds, millisecond integers (SendGrid docs show
both), numeric strings and ISO-8601 with or without offsets. Magnitude decides the unit.
"""
from __future__ import annotations

import math
from datetime import datetime, timezone

from .errors import PayloadError

_MS_THRESHOLD = 1e11  # 1e11 s is year 5138; 1e11 ms is 1973


def to_unix_seconds(value: object, field: str) -> float:
    if isinstance(value, bool) or value is None:
        raise PayloadError(f"{field}: missing or not a timestamp")
    if isinstance(value, (int, float)):
        ts = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            ts = float(text)
        except ValueError:
            try:
                dt = datetime.fromisoformat(text.replace(" ", "T", 1) if "T" not in text else text)
            except ValueError:
                raise PayloadError(f"{field}: not a Unix time or ISO-8601 timestamp") from None
            if dt.tzinfo is None:
                dt = dt.replace(tzinfo=timezone.utc)
            return dt.timestamp()
    else:
        raise PayloadError(f"{field}: not a timestamp (got {type(value).__name__})")
    if not math.isfinite(ts) or ts < 0:
        raise PayloadError(f"{field}: not a plausible timestamp")
    if ts > _MS_THRESHOLD:
        ts /= 1000.0
    return ts
