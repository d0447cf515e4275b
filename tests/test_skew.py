"""detector.skew: which events are stamped too far ahead to move the clock."""
import numpy as np

from detector.skew import future_outliers

T0 = 1_700_000_000.0
DAY = 86400.0


def test_wall_clock_reference():
    ts = [T0 - 30 * DAY, T0, T0 + 3599, T0 + 3601, T0 + 365 * DAY]
    assert future_outliers(ts, 3600, now=T0).tolist() == [False, False, False, True, True]


def test_an_isolated_future_event_is_an_outlier_wherever_it_sits():
    ts = T0 + np.arange(1000) * 3.0
    for pos in (0, 500, 999):
        bad = ts.copy()
        bad[pos] += DAY
        assert np.flatnonzero(future_outliers(bad, 3600)).tolist() == [pos]
        assert np.flatnonzero(future_outliers(bad, 3600, newest=T0 - 10)).tolist() == [pos]


def test_a_gap_where_the_stream_moves_ahead_is_followed_even_late_in_a_batch():
    before = T0 + np.arange(900) * 3.0
    after = T0 + 30 * DAY + np.arange(300) * 3.0   # a quarter of the batch: the batch median is before the gap
    ts = np.concatenate([before, after])
    assert float(np.median(ts)) < after[0] - 3600
    assert not future_outliers(ts, 3600, newest=T0).any()


def test_the_newest_time_already_counted_is_a_reference_too():
    ts = T0 + DAY + np.arange(50) * 3.0     # a whole batch a day ahead of what was counted
    assert not future_outliers(ts, 3600, newest=T0 + DAY - 60).any()
    assert not future_outliers(ts, 3600, newest=T0).any()  # the stream moved: followed
    assert future_outliers(np.array([T0 + 10, T0 + DAY, T0 + 20]), 3600, newest=T0).tolist() == [False, True, False]


def test_empty_and_disabled():
    assert future_outliers([], 3600).tolist() == []
    assert not future_outliers([T0, T0 + 365 * DAY], float("inf")).any()
