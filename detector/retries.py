"""Which delivery attempts are a message's first, when the ESP does not number them.

SendGrid numbers its deferrals but not its deliveries; SES event publishing, Brevo and
Resend post deferrals without numbers. A message deferred and retried yields a deferral now
and an outcome (delivered or bounced) later: after a bulk send stops, those late outcomes are
not new mail, and counted as sends they made the retry tail look like a scope still sending
(so blocks at its end paged on clean traffic). Remembering, by ``message_id``, which messages
were deferred tells a retry's outcome from a first attempt: a message's first event of an
attempt type is its first attempt, any later one is a retry.

The memory is bounded (oldest entries go first) and forgets a message after ``ttl`` seconds
of event time (longer than ESPs retry). Streams that post no deferrals (Postmark, Mailjet,
SES classic) cannot be told apart this way; the sending gate stays open for them.
"""
from __future__ import annotations

from collections import OrderedDict

#: ESPs retry for up to 72 h (SendGrid), most within a few hours.
DEFAULT_TTL = 72 * 3600.0
DEFAULT_CAPACITY = 1_000_000


class RetryMemory:
    """message_id -> event time of its last deferral, for messages still being retried."""

    def __init__(self, ttl: float = DEFAULT_TTL, capacity: int = DEFAULT_CAPACITY) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._deferred: OrderedDict[str, float] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._deferred)

    def first_attempt(self, message_id: str | None, deferred: bool, ts: float) -> bool | None:
        """Is this attempt (a deferral, or a delivery/bounce) the message's first? None: unknown."""
        if not message_id:
            return None
        seen = self._deferred.get(message_id)
        if seen is not None and ts - seen > self.ttl:
            seen = None
        if deferred:
            self._deferred[message_id] = ts
            self._deferred.move_to_end(message_id)
            if len(self._deferred) > self.capacity:
                self._deferred.popitem(last=False)
                self.evicted += 1
            return seen is None
        if seen is not None:
            del self._deferred[message_id]  # the retries ended with this outcome
            return False
        return True

    def first_attempts(self, message_ids: list, deferred: list, ts: list) -> list[bool | None]:
        """:meth:`first_attempt` for a batch of attempts, in order (the same answers, one call)."""
        out = []
        append = out.append
        memory, ttl, capacity = self._deferred, self.ttl, self.capacity
        for message_id, is_deferred, t in zip(message_ids, deferred, ts):
            if not message_id:
                append(None)
                continue
            seen = memory.get(message_id)
            if seen is not None and t - seen > ttl:
                seen = None
            if is_deferred:
                memory[message_id] = t
                memory.move_to_end(message_id)
                if len(memory) > capacity:
                    memory.popitem(last=False)
                    self.evicted += 1
                append(seen is None)
                continue
            if seen is not None:
                del memory[message_id]  # the retries ended with this outcome
                append(False)
                continue
            append(True)
        return out
