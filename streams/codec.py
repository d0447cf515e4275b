"""Wire formats of the pipeline's topics.

Events topic: one canonical event (JSON object) or a batch (JSON array) per message;
batches are what keep Faust's per-message overhead off the hot path. A message that is
not JSON, or an element that fails validation, goes to the dead-letter topic with the
reason; the rest of its batch is processed.
"""
from __future__ import annotations

import json
import time
from typing import Any

from detector.counts import ScopeDelta
from detector.event import EventError, validate_event


def decode_events(raw: bytes | str | Any) -> tuple[list[dict], list[tuple[Any, str]]]:
    """(valid events, [(rejected value, reason)]) from one message value."""
    if isinstance(raw, (bytes, bytearray, str)):
        try:
            value = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return [], [(raw, f"event: invalid JSON: {exc}")]
    else:
        value = raw
    items = value if isinstance(value, list) else [value]
    good, bad = [], []
    for item in items:
        try:
            good.append(validate_event(item))
        except EventError as exc:
            bad.append((item, str(exc)))
    return good, bad


def dead_letter(value: Any, reason: str, source: str) -> bytes:
    """A DLQ record: the raw input (as text) and why it was rejected."""
    if isinstance(value, (bytes, bytearray)):
        payload = value.decode("utf-8", errors="replace")
    elif isinstance(value, str):
        payload = value
    else:
        payload = json.dumps(value, default=str)
    return json.dumps({"reason": reason, "source": source, "rejected_at": time.time(),
                       "payload": payload}).encode()


def delta_to_json(d: ScopeDelta) -> dict:
    out = {"id": d.scope_id, "scope": d.scope,
           "w": {repr(k): list(v) for k, v in d.windows.items()},
           "r": {repr(k): v for k, v in d.reasons.items()}}
    if d.seq:
        out["s"] = {repr(k): v for k, v in d.seq.items()}
    return out


def delta_from_json(obj: dict) -> ScopeDelta:
    return ScopeDelta(obj["id"], obj["scope"],
                      {float(k): v for k, v in obj["w"].items()},
                      {float(k): v for k, v in obj["r"].items()},
                      {float(k): v for k, v in obj.get("s", {}).items()})
