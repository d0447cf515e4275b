"""observe_many must leave a histogram exactly as one observe() per value would."""
from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram

from ddetect.metrics import Metrics, observe_many


def _samples(values, bulk: bool) -> dict:
    registry = CollectorRegistry()
    h = Histogram("lateness_seconds", "test", registry=registry, buckets=(0.1, 1, 5, 60, 3600))
    if bulk:
        observe_many(h, values)
    else:
        for v in values:
            h.observe(v)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect() for s in metric.samples if not s.name.endswith("_created")}


def test_bulk_equals_one_observe_per_value():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.lognormal(1.0, 2.0, 5000), [0.0, 0.1, 1.0, 5.0, 60.0, 3600.0, 1e6]])
    bulk, single = _samples(values, bulk=True), _samples(values.tolist(), bulk=False)
    assert bulk.keys() == single.keys()
    for key, value in single.items():
        if key[0].endswith("_sum"):  # numpy sums pairwise, observe() one by one
            assert bulk[key] == pytest.approx(value, rel=1e-12)
        else:
            assert bulk[key] == value, key
    assert _samples([], bulk=True) == _samples([], bulk=False)


def test_worker_lateness_histogram_counts_every_event():
    from detector.counts import EventBatch
    from streams.app import _observe_batch

    metrics = Metrics(CollectorRegistry())
    import time
    now = time.time()
    events = [{"timestamp": now - s, "type": "delivered", "campaign": "c"} for s in (1, 30, 600, 7200)]
    _observe_batch(metrics, EventBatch.from_events(events))
    count = metrics.registry.get_sample_value("ddetect_event_lateness_seconds_count")
    assert count == 4
    assert metrics.registry.get_sample_value("ddetect_event_lateness_seconds_bucket", {"le": "60.0"}) == 2
