"""A message's first attempt is told from its retries by message_id where the ESP does not number them."""
from detector.retries import RetryMemory


def test_a_deferred_message_outcome_is_a_retry_and_a_fresh_one_is_a_first_attempt():
    mem = RetryMemory(ttl=3600.0)
    assert mem.first_attempt("m1", deferred=True, ts=0.0) is True      # first try, deferred
    assert mem.first_attempt("m1", deferred=True, ts=600.0) is False   # second try, deferred again
    assert mem.first_attempt("m1", deferred=False, ts=1800.0) is False  # delivered on a retry
    assert len(mem) == 0                                                  # its retries are over
    assert mem.first_attempt("m2", deferred=False, ts=10.0) is True     # delivered at once
    assert mem.first_attempt(None, deferred=False, ts=10.0) is None     # no id: unknown


def test_memory_is_bounded_and_forgets_after_its_ttl():
    mem = RetryMemory(ttl=100.0, capacity=3)
    for i in range(5):
        mem.first_attempt(f"m{i}", deferred=True, ts=float(i))
    assert len(mem) == 3 and mem.evicted == 2
    assert mem.first_attempt("m0", deferred=False, ts=5.0) is True       # evicted: looks new
    assert mem.first_attempt("m4", deferred=False, ts=500.0) is True     # past the ttl
