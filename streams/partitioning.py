"""Which partition of the scope-deltas topic owns a scope.

Scopes are spread by a stable hash of their id, so more partitions and more workers
share the load. One exception: Benjamini-Hochberg needs every scope a window-test rule
evaluates in the same round, so all scopes of a scope definition used by such a rule go
to one partition (chosen by hashing the definition). That keeps the pipeline's alerts
identical to ``ddetect replay``'s.
"""
from __future__ import annotations

import zlib
from typing import Iterable, Sequence

from detector.rules import RuleSet

ROUND_TESTS = ("binomial", "betabinomial")


class Partitioner:
    def __init__(self, ruleset: RuleSet, partitions: int):
        self.partitions = partitions
        self.pinned = {r.scope for r in ruleset.rules if r.test in ROUND_TESTS}

    def __call__(self, fields: Sequence[str] | Iterable[str], scope_id: str) -> int:
        fields = tuple(fields)
        key = "|".join(fields) if fields in self.pinned else scope_id
        return zlib.crc32(key.encode()) % self.partitions
