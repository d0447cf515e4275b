"""Retry schedule: exponential backoff with full jitter, and ``Retry-After`` honoured (never retry sooner).

Full jitter (a uniform draw in [0, base * 2^n]) spreads a burst of failures so that many alerts do not hit a
recovering receiver in lockstep (AWS Architecture Blog, "Exponential Backoff And Jitter", 2015).
"""
from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 0.5
    max_delay: float = 60.0
    max_retry_after: float = 600.0  # a Retry-After beyond this is clipped so one receiver cannot stall the stream

    def __post_init__(self):
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("base_delay and max_delay must be >= 0")

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if retry_after is not None:
            return min(retry_after, self.max_retry_after) + rng.uniform(0, self.base_delay)
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
