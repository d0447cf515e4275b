"""Alertmanager/Prometheus-style durations ("30s", "15m", "1h30m", "2d") as seconds.

Routing files are written by people; the same duration syntax as Alertmanager keeps them familiar.
"""
from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; raises ValueError naming the accepted syntax."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 15m, 1h30m")
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 15m, 1h30m")
    return total
