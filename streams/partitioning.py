"""Which partition of the scope-deltas topic owns a scope.

Scopes are spread by a stable hash of their id, so more partitions and more workers
share the load. One exception: Benjamini-Hochberg needs every scope a window-test rule
evaluates in the same round, so all scopes of a scope definition used by such a rule go
to one partition (chosen by hashing the definition). Another: a silence rule whose scope
names the ESP asks, at each window, whether that ESP posted anything at all (its stream's
scope, :data:`~detector.rules.CHANNEL_SCOPE`), so those scopes go to the partition of their
ESP's stream (chosen by hashing ``provider=<ESP>``). And a rule that pools sparse scopes
under a parent (``pool_under``) learns its prior from the parent's other scopes, so a scope
of such a rule goes to the partition of its parent (chosen by hashing the parent's fields,
e.g. ``mailbox_provider=gmail``; several pooling rules on one scope use the fields they
share). That keeps the pipeline's alerts identical to ``ddetect replay``'s.
"""
from __future__ import annotations

import zlib
from typing import Iterable, Sequence

from detector.registry import STAT_TESTS
from detector.rules import CHANNEL_SCOPE, RuleSet


class Partitioner:
    def __init__(self, ruleset: RuleSet, partitions: int):
        self.partitions = partitions
        self.pinned = {r.scope for r in ruleset.rules if STAT_TESTS[r.test].in_rounds}
        self.by_channel = ({r.scope for r in ruleset.rules if r.test == "silence" and "provider" in r.scope}
                           | {CHANNEL_SCOPE}) - self.pinned if CHANNEL_SCOPE in ruleset.scopes() else set()
        parents: dict[tuple[str, ...], set[str]] = {}
        for r in ruleset.rules:
            if r.pool_under and r.scope not in self.pinned and r.scope not in self.by_channel:
                shared = parents.get(r.scope)
                parents[r.scope] = set(r.pool_under) if shared is None else shared & set(r.pool_under)
        #: scope definition -> the parent fields its scopes are placed by
        self.by_parent = {scope: tuple(f for f in scope if f in fields) for scope, fields in parents.items()}

    def __call__(self, fields: Sequence[str] | Iterable[str], scope_id: str) -> int:
        fields = tuple(fields)
        if fields in self.pinned:
            key = "|".join(fields)
        elif fields in self.by_channel:
            key = next((part for part in scope_id.split("|") if part.startswith("provider=")), scope_id)
        elif fields in self.by_parent:
            parts = scope_id.split("|")
            key = "|".join(next((p for p in reversed(parts) if p.startswith(f + "=")), f + "=")
                           for f in self.by_parent[fields])
        else:
            key = scope_id
        return zlib.crc32(key.encode()) % self.partitions
