"""Hold Python's cyclic garbage collector off while one batch is counted and applied.

A batch creates thousands of small containers (one delta per scope, its window lists)
that all live until the batch is done. Each 700 of them start a collection, and what
survives is promoted until a full collection walks every scope state the engine holds:
on a million-event benchmark that was a third of the engine's time. Nothing in a batch
makes reference cycles, so reference counting frees it all; the collector runs as usual
between batches.
"""
from __future__ import annotations

import gc
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def gc_paused() -> Iterator[None]:
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
