"""Delivery ledger: what was sent to whom, escalation timers and acks, in one SQLite file in the data dir.

Why SQLite rather than a compacted Kafka topic: the ledger row must be durable *before* the alert's offset is
committed, and read back synchronously on the next delivery decision. A local WAL-mode SQLite commit (with
``synchronous=FULL``) gives that in one fsync, with no read-your-writes race against a producer and no replay
of a topic at start. The cost: the file must sit on a persistent volume, and router replicas must not share
partitions without sharing it (run one router per consumer group, or put the data dir on shared storage).

Keys are ``(receiver, dedup_key, status, alert_id)`` where receiver is an integration id such as
``email-ops/slack/0``. States: ``sending`` (an attempt started; re-sent after a crash, the at-least-once side),
``delivered``, ``dead`` (dead-lettered), ``suppressed`` (repeat_interval said not yet).
"""
from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
  receiver TEXT NOT NULL, dedup_key TEXT NOT NULL, status TEXT NOT NULL, alert_id TEXT NOT NULL,
  state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, first_at REAL NOT NULL, updated_at REAL NOT NULL,
  sent_at REAL, reason TEXT,
  PRIMARY KEY (receiver, dedup_key, status, alert_id));
CREATE TABLE IF NOT EXISTS escalations (
  dedup_key TEXT NOT NULL, alert_id TEXT NOT NULL, origin TEXT NOT NULL, target TEXT NOT NULL,
  level INTEGER NOT NULL, due_at REAL NOT NULL, state TEXT NOT NULL, alert TEXT NOT NULL, updated_at REAL NOT NULL,
  PRIMARY KEY (dedup_key, alert_id, origin));
CREATE TABLE IF NOT EXISTS acks (
  dedup_key TEXT NOT NULL, acked_at REAL NOT NULL, acked_by TEXT NOT NULL);
"""


@dataclass(frozen=True)
class DeliveryRow:
    state: str
    attempts: int
    sent_at: float | None
    reason: str | None


@dataclass(frozen=True)
class Escalation:
    dedup_key: str
    alert_id: str
    origin: str  # receiver that got the alert first (identifies the chain)
    target: str  # receiver to notify when due
    level: int
    due_at: float
    state: str  # armed | acked | resolved | done
    alert: dict


class Ledger:
    def __init__(self, path: str | Path):
        self.path = str(path)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _exec(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- deliveries ---------------------------------------------------------------------------------------
    def get(self, receiver: str, dedup_key: str, status: str, alert_id: str) -> DeliveryRow | None:
        rows = self._exec("SELECT state, attempts, sent_at, reason FROM deliveries WHERE receiver=? AND dedup_key=?"
                          " AND status=? AND alert_id=?", (receiver, dedup_key, status, alert_id))
        return DeliveryRow(*rows[0]) if rows else None

    def mark(self, receiver: str, dedup_key: str, status: str, alert_id: str, state: str, now: float,
             attempts: int = 0, reason: str | None = None) -> None:
        sent = now if state == "delivered" else None
        self._exec(
            "INSERT INTO deliveries (receiver, dedup_key, status, alert_id, state, attempts, first_at, updated_at,"
            " sent_at, reason) VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (receiver, dedup_key, status, alert_id)"
            " DO UPDATE SET state=excluded.state, attempts=deliveries.attempts+excluded.attempts,"
            " updated_at=excluded.updated_at, sent_at=COALESCE(excluded.sent_at, deliveries.sent_at),"
            " reason=excluded.reason",
            (receiver, dedup_key, status, alert_id, state, attempts, now, now, sent, reason))

    def open_incident_sent_at(self, receiver: str, dedup_key: str, alert_id: str) -> float | None:
        """Last firing delivery to ``receiver`` for another, not yet resolved alert with this dedup_key."""
        rows = self._exec(
            "SELECT MAX(f.sent_at) FROM deliveries f WHERE f.receiver=? AND f.dedup_key=? AND f.status='firing'"
            " AND f.state='delivered' AND f.alert_id<>? AND NOT EXISTS (SELECT 1 FROM deliveries r WHERE"
            " r.receiver=f.receiver AND r.dedup_key=f.dedup_key AND r.alert_id=f.alert_id AND r.status='resolved')",
            (receiver, dedup_key, alert_id))
        return rows[0][0] if rows and rows[0][0] is not None else None

    def firing_receivers(self, dedup_key: str, alert_id: str) -> list[str]:
        """Integrations that were sent the firing alert (directly or by escalation): they must hear it resolve."""
        rows = self._exec("SELECT receiver FROM deliveries WHERE dedup_key=? AND alert_id=? AND status='firing'"
                          " AND state='delivered' ORDER BY first_at", (dedup_key, alert_id))
        return [r[0] for r in rows]

    # --- escalations --------------------------------------------------------------------------------------
    def arm(self, alert: dict, origin: str, target: str, due_at: float, now: float) -> bool:
        """Start an escalation chain unless one exists already (re-delivery after a restart must not re-arm)."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO escalations VALUES (?,?,?,?,?,?,?,?,?)",
                (alert["dedup_key"], alert["alert_id"], origin, target, 1, due_at, "armed",
                 json.dumps(alert, sort_keys=True), now))
            return cur.rowcount == 1

    def due(self, now: float) -> list[Escalation]:
        rows = self._exec("SELECT dedup_key, alert_id, origin, target, level, due_at, state, alert FROM escalations"
                          " WHERE state='armed' AND due_at<=? ORDER BY due_at", (now,))
        return [Escalation(*r[:7], json.loads(r[7])) for r in rows]

    def advance(self, esc: Escalation, target: str | None, due_at: float | None, now: float) -> None:
        """Move a fired escalation to its next level, or finish it when the chain ends."""
        if target is None:
            self._exec("UPDATE escalations SET state='done', updated_at=? WHERE dedup_key=? AND alert_id=? AND"
                       " origin=? AND state='armed'", (now, esc.dedup_key, esc.alert_id, esc.origin))
        else:
            self._exec("UPDATE escalations SET target=?, level=level+1, due_at=?, updated_at=? WHERE dedup_key=?"
                       " AND alert_id=? AND origin=? AND state='armed'",
                       (target, due_at, now, esc.dedup_key, esc.alert_id, esc.origin))

    def ack(self, dedup_key: str, by: str, now: float) -> int:
        """Stop every armed escalation of ``dedup_key``; returns how many were stopped (0: nothing pending)."""
        with self._lock:
            cur = self._db.execute("UPDATE escalations SET state='acked', updated_at=? WHERE dedup_key=? AND"
                                   " state='armed'", (now, dedup_key))
            self._db.execute("INSERT INTO acks VALUES (?,?,?)", (dedup_key, now, by))
            return cur.rowcount

    def resolve(self, dedup_key: str, now: float) -> int:
        with self._lock:
            return self._db.execute("UPDATE escalations SET state='resolved', updated_at=? WHERE dedup_key=? AND"
                                    " state='armed'", (now, dedup_key)).rowcount

    def escalations(self, dedup_key: str) -> list[Escalation]:
        rows = self._exec("SELECT dedup_key, alert_id, origin, target, level, due_at, state, alert FROM escalations"
                          " WHERE dedup_key=? ORDER BY updated_at", (dedup_key,))
        return [Escalation(*r[:7], json.loads(r[7])) for r in rows]

    def acks(self, dedup_key: str) -> list[tuple[float, str]]:
        return [tuple(r) for r in self._exec("SELECT acked_at, acked_by FROM acks WHERE dedup_key=?", (dedup_key,))]

    def deliveries(self, dedup_key: str) -> list[dict]:
        rows = self._exec("SELECT receiver, status, alert_id, state, attempts, reason FROM deliveries WHERE"
                          " dedup_key=? ORDER BY first_at", (dedup_key,))
        return [dict(zip(("receiver", "status", "alert_id", "state", "attempts", "reason"), r)) for r in rows]
