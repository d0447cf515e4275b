"""Seeded traffic simulator: realistic ESP event streams with labelled incidents.

    events, labels = simulate("old-list", seed=1, start=DEFAULT_START, duration=6 * 3600)
    write_jsonl(events, "events.jsonl"); write_labels(labels, "labels.json")
"""
from .api import DEFAULT_START, read_labels, simulate, sort_by_timestamp, write_jsonl, write_labels
from .scenarios import SCENARIOS
from .table import DEMO_HASH_KEY, EventTable

__all__ = ["DEFAULT_START", "DEMO_HASH_KEY", "EventTable", "SCENARIOS", "read_labels", "simulate",
           "sort_by_timestamp", "write_jsonl", "write_labels", "main_simulate"]


def main_simulate(argv=None) -> int:  # lazy: keeps argparse out of library imports
    from .cli import main_simulate as _main
    return _main(argv)
