"""The test table (detector/registry.py) is what the loader, the engine and the partitioner read."""
import pytest

from detector import detectors
from detector.engine import Engine
from detector.event import validate_event
from detector.registry import STAT_TESTS, StatTest, applicable_tests
from detector.rules import RuleError, load_rules_text
from streams.partitioning import Partitioner

from .streamgen import stream

T0 = 1_700_000_000.0

TOY = """
rules:
  - name: any_hard_bounce
    test: toy
    metric: hard_bounce_rate
    scope: [campaign]
    category: technical
    severity: info
    q: 0.01
"""


def _toy_close(rule, st, sid, w, x, n, sent, ctx):
    """Fires on a window with any hard bounce; calm otherwise."""
    if not n:
        return None
    return detectors.Finding(rule, sid, w, x, n, fire=x > 0, calm=x == 0)


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(STAT_TESTS, "toy", StatTest("toy", "rate", _toy_close, ("q",), in_rounds=True))


def test_a_new_test_is_one_entry_in_the_table(toy):
    ruleset = load_rules_text(TOY)
    events = [validate_event(e) for e in stream(seed=3, start=T0, hours=1, rate_per_s=2, hard=0.01)]
    engine = Engine(ruleset)
    alerts = engine.process(events) + engine.flush()
    assert [a["rule"] for a in alerts if a["status"] == "firing"] == ["any_hard_bounce"]
    assert Partitioner(ruleset, 8).pinned == {("campaign",)}   # decided in rounds: one partition


def test_keys_apply_to_the_tests_the_table_names(toy):
    assert "toy" in applicable_tests("q") and "toy" not in applicable_tests("shift")
    with pytest.raises(RuleError) as info:
        load_rules_text(TOY.replace("    q: 0.01\n", "    shift: 3\n"))
    assert "key 'shift' does not apply to test 'toy'" in info.value.errors[0]
    with pytest.raises(RuleError) as info:
        load_rules_text(TOY.replace("metric: hard_bounce_rate", "metric: volume"))
    assert "test 'toy' needs a rate metric" in info.value.errors[0]


def test_an_unknown_test_names_the_table():
    with pytest.raises(RuleError) as info:
        load_rules_text(TOY)
    assert "'toy' is not one of " + ", ".join(STAT_TESTS) in info.value.errors[0]
