"""Campaign identity from a provider payload via a configurable list of field paths.

A path is dotted (``msg.metadata.campaign``); a numeric segment indexes a list; a list
value at the end yields its first non-empty element (SendGrid ``category``, SES tags).
The first path that yields a value wins; otherwise the configured default (``(none)``).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

MAX_CAMPAIGN_CHARS = 200


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        return value or None
    if isinstance(value, (int, float)):
        return None if value == 0 else str(value)  # Mailjet sends mj_campaign_id 0 = none
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _scalar(item) if not isinstance(item, (list, tuple, dict)) else None
            if found:
                return found
    return None


def lookup(obj: Any, path: str) -> Any:
    if type(obj) is dict and "." not in path:  # hot path: a top-level field of parsed JSON
        return obj.get(path)
    for segment in path.split("."):
        if isinstance(obj, Mapping):
            obj = obj.get(segment)
        elif isinstance(obj, list) and segment.isdigit():
            idx = int(segment)
            obj = obj[idx] if idx < len(obj) else None
        else:
            return None
        if obj is None:
            return None
    return obj


def resolve_campaign(raw: Any, paths: Iterable[str], default: str) -> str:
    for path in paths:
        value = lookup(raw, path)
        if value is None:
            continue
        value = value.strip() if type(value) is str else _scalar(value)
        if value:
            return value[:MAX_CAMPAIGN_CHARS]
    return default


class CampaignResolver:
    """:func:`resolve_campaign` with the paths parsed once (one call per event on the
    hot path); same result for every input."""

    def __init__(self, paths: Iterable[str], default: str):
        self.paths = tuple(paths)
        self.default = default
        self._simple = all("." not in p for p in self.paths)

    def __call__(self, raw: Any) -> str:
        if not self._simple or type(raw) is not dict:
            return resolve_campaign(raw, self.paths, self.default)
        for path in self.paths:
            value = raw.get(path)
            if value is None:
                continue
            if type(value) is str:
                value = value.strip()
            elif type(value) is list and value and type(value[0]) is str and value[0].strip():
                value = value[0].strip()   # SendGrid category: ["spring-sale"]
            else:
                value = _scalar(value)
            if value:
                return value[:MAX_CAMPAIGN_CHARS]
        return self.default
