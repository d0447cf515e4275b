"""``simulate()``: a seeded scenario run -> (events in webhook-arrival order, ground-truth labels)."""
from __future__ import annotations

import hashlib
import json
import os
from typing import IO, Iterable

import numpy as np

from .profiles import behaviour, profile_name
from .scenarios import SCENARIOS, finalize_label
from .table import EventTable
from .traffic import (COMPLAINT_DELAY_MEDIAN, RETRY_GAPS, generate_events, generate_messages, webhook_arrivals,
                      webhook_outages)
from .world import build_world

DEFAULT_START = 1717488000.0   # 2024-06-04 08:00:00 UTC: a fixed start keeps runs reproducible


def scenario_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-")
    if key not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    return key


def simulate(scenario: str, *, seed: int, start: float = DEFAULT_START, duration: float = 6 * 3600.0,
             scale: float = 1.0, profile: str = "sends",
             params: dict | None = None, history: float = 0.0) -> tuple[EventTable, list[dict]]:
    """Simulate ``duration`` seconds of traffic from ``start`` with one scenario applied.

    Returns the events as an :class:`EventTable` (iterate it for canonical dicts, in the
    order webhooks would arrive: late and duplicate deliveries included) and the labels.
    Same arguments, same output, byte for byte. ``scale`` multiplies every volume
    (scale 1 is ~1M events per 6 h). ``profile`` (:mod:`sim.profiles`) decides which event
    types each campaign's ESP posts and how it retries; ``sends`` is every type from every
    campaign. ``params`` are keyword arguments for the scenario function (the held-out
    variants, :mod:`sim.heldout`). ``history`` seconds of traffic precede ``start``; scenario
    onsets stay fractions of ``[start, start + duration)``."""
    name = scenario_name(scenario)
    prof = profile_name(profile)
    world = build_world(seed, start - history, duration + history, scale)
    if history:
        world.scored_start = float(start)
    specs = SCENARIOS[name](world, np.random.default_rng([seed, 2]), **(params or {}))
    esp = behaviour(prof, [c.esp for c in world.campaigns], RETRY_GAPS, COMPLAINT_DELAY_MEDIAN)
    ips = sorted({ip for c in world.campaigns for ip in c.sender.ips})
    msgs = generate_messages(world, np.random.default_rng([seed, 3]), {ip: i for i, ip in enumerate(ips)})
    raw, reasons = generate_events(world, msgs, np.random.default_rng([seed, 4]), ips,
                                   esp=None if prof == "sends" else esp)
    rows, seq, arrival = webhook_arrivals(raw, np.random.default_rng([seed, 5]))
    if world.outages:
        rows, seq, arrival = webhook_outages(world, msgs, raw, rows, seq, arrival, np.random.default_rng([seed, 6]))
    tag = f"{name}|{seed}|{start!r}|{duration!r}|{scale!r}"
    if prof != "sends":
        tag += f"|{prof}"
    if params:
        tag += "|" + json.dumps(params, sort_keys=True, default=str)
    tag = tag.encode()
    table = EventTable(
        ts=np.round(raw.ts[rows], 3), arrival=np.round(arrival, 3), type=raw.type[rows], bclass=raw.bclass[rows],
        code=raw.code[rows], reason=raw.reason[rows], msg=raw.msg[rows], seq=seq, attempt=raw.attempt[rows],
        m_camp=msgs.camp, m_dom=msgs.dom, m_rid=msgs.rid, m_t=msgs.t,
        campaigns=[c.name for c in world.campaigns], camp_esp=[c.esp for c in world.campaigns],
        camp_sdom=[c.sending_domain for c in world.campaigns], camp_pool=[c.ip_pool for c in world.campaigns],
        reasons=reasons, id_prefix="sim" + hashlib.sha256(tag).hexdigest()[:8])
    labels = [finalize_label(spec, name, world, msgs, esp) for spec in specs]
    return table, labels


def sort_by_timestamp(events: EventTable | Iterable[dict]) -> EventTable | list[dict]:
    """Event-time order (what a replay reads); arrival order is what a live receiver sees."""
    if isinstance(events, EventTable):
        return events.sorted_by_timestamp()
    return sorted(events, key=lambda ev: ev["timestamp"])


def _open_out(path: str | os.PathLike | IO[str]):
    if hasattr(path, "write"):
        return path, False
    return open(path, "w", encoding="utf-8", newline="\n"), True


def write_jsonl(events: EventTable | Iterable[dict], path: str | os.PathLike | IO[str]) -> int:
    """One canonical event per line (sorted keys, compact, like ``detector.event.dumps``)."""
    out, close = _open_out(path)
    try:
        if isinstance(events, EventTable):
            return events.write_jsonl(out)
        n = 0
        for ev in events:
            out.write(json.dumps(ev, separators=(",", ":"), sort_keys=True) + "\n")
            n += 1
        return n
    finally:
        if close:
            out.close()


def write_labels(labels: list[dict], path: str | os.PathLike | IO[str]) -> None:
    out, close = _open_out(path)
    try:
        json.dump(labels, out, indent=2, sort_keys=True)
        out.write("\n")
    finally:
        if close:
            out.close()


def read_labels(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)
