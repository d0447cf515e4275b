"""A simulated event stream held as columns, materialised as canonical dicts on demand.

A million events as Python dicts cost about a gigabyte; as columns of small integers
they cost ~40 MB. Iterating yields dicts that pass :func:`detector.event.validate_event`;
:meth:`EventTable.write_jsonl` writes the same JSON text that ``detector.event.dumps``
would (sorted keys, compact separators) without building the dicts at all.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import IO, Iterator

import numpy as np

from .catalog import DOMAINS
from .traffic import BOUNCE_NAMES, TYPE_NAMES

#: Key of the recipient HMAC in simulated data. Public on purpose: the simulator's
#: recipients are synthetic, and the demo's ingest server is configured with the same key
#: so hashes of rendered webhooks match the simulator's.
DEMO_HASH_KEY = b"ddetect-demo-recipient-key"


def synthetic_address(rid: int, domain: str) -> str:
    """The made-up address of recipient ``rid`` (kept in memory only, hashed before output)."""
    return f"u{rid:08d}@{domain}"


def recipient_hash(address: str, key: bytes = DEMO_HASH_KEY) -> str:
    """HMAC-SHA256 of the lower-cased address, as the ingest edge computes it."""
    return hmac.new(key, address.lower().encode("utf-8"), hashlib.sha256).hexdigest()


def _hmac_pads(key: bytes):
    """HMAC-SHA256 split into its keyed inner/outer states (RFC 2104), so hashing a
    million messages copies two states instead of re-keying each time (~2x faster)."""
    block = key if len(key) <= 64 else hashlib.sha256(key).digest()
    block = block.ljust(64, b"\0")
    return (hashlib.sha256(bytes(b ^ 0x36 for b in block)), hashlib.sha256(bytes(b ^ 0x5C for b in block)))


@dataclass
class EventTable:
    """Rows in emission order (arrival order unless re-sorted).

    Per-row columns: ``ts`` (event time, ms precision), ``arrival`` (when the webhook
    reaches the receiver), ``type``/``bclass``/``code``/``reason`` codes, ``msg`` (message
    row), ``seq`` (event number; duplicates share it). Per-message columns: ``m_camp``,
    ``m_dom``, ``m_rid``, ``m_t`` (accepted time). Per-campaign lists: names, ESP,
    sending domain, IP pool. ``id_prefix`` makes ids unique across runs.
    """

    ts: np.ndarray
    arrival: np.ndarray
    type: np.ndarray
    bclass: np.ndarray
    code: np.ndarray
    reason: np.ndarray
    msg: np.ndarray
    seq: np.ndarray
    m_camp: np.ndarray
    m_dom: np.ndarray
    m_rid: np.ndarray
    m_t: np.ndarray
    campaigns: list[str]
    camp_esp: list[str]
    camp_sdom: list[str]
    camp_pool: list[str]
    reasons: list[str]
    id_prefix: str
    _hashes: list[str] | None = None
    attempt: np.ndarray | None = None   # per row: delivery attempt number, 0 where not reported

    def __len__(self) -> int:
        return len(self.ts)

    # ------------------------------------------------------------------ views
    def take(self, order: np.ndarray) -> "EventTable":
        """The same stream with rows reordered/subset by ``order``."""
        cols = {k: getattr(self, k)[order] for k in ("ts", "arrival", "type", "bclass", "code", "reason", "msg", "seq")}
        return EventTable(**cols, m_camp=self.m_camp, m_dom=self.m_dom, m_rid=self.m_rid, m_t=self.m_t,
                          campaigns=self.campaigns, camp_esp=self.camp_esp, camp_sdom=self.camp_sdom,
                          camp_pool=self.camp_pool, reasons=self.reasons, id_prefix=self.id_prefix,
                          _hashes=self._hashes, attempt=None if self.attempt is None else self.attempt[order])

    def sorted_by_timestamp(self) -> "EventTable":
        """Event-time order (ties by event number); duplicates stay next to each other."""
        return self.take(np.lexsort((self.seq, self.ts)))

    # ------------------------------------------------------------------ strings
    def event_id(self, seq: int) -> str:
        return f"{self.id_prefix}-{seq:010x}"

    def message_id(self, msg: int) -> str:
        return f"{self.id_prefix}.{msg:09x}.{self.camp_esp[self.m_camp[msg]]}"

    def message_hashes(self) -> list[str]:
        """Recipient hash per message (computed once; the address never leaves this loop)."""
        if self._hashes is None:
            names = DOMAINS.names
            inner, outer = _hmac_pads(DEMO_HASH_KEY)
            out = []
            for r, d in zip(self.m_rid.tolist(), self.m_dom.tolist()):
                h = inner.copy()
                h.update(f"u{r:08d}@{names[d]}".encode())
                o = outer.copy()
                o.update(h.digest())
                out.append(o.hexdigest())
            self._hashes = out
        return self._hashes

    def column(self, name: str) -> np.ndarray:
        """A canonical field as a numpy array of Python values (for tests and analysis)."""
        if name == "type":
            return np.array(TYPE_NAMES, dtype=object)[self.type]
        if name == "bounce_class":
            return np.array((None,) + BOUNCE_NAMES, dtype=object)[self.bclass + 1]
        if name == "campaign":
            return np.array(self.campaigns, dtype=object)[self.m_camp[self.msg]]
        if name == "mailbox_provider":
            return np.array(DOMAINS.provider, dtype=object)[self.m_dom[self.msg]]
        if name == "recipient_domain":
            return np.array(DOMAINS.names, dtype=object)[self.m_dom[self.msg]]
        if name == "sending_domain":
            return np.array(self.camp_sdom, dtype=object)[self.m_camp[self.msg]]
        if name == "ip_pool":
            return np.array(self.camp_pool, dtype=object)[self.m_camp[self.msg]]
        if name == "provider":
            return np.array(self.camp_esp, dtype=object)[self.m_camp[self.msg]]
        if name == "timestamp":
            return self.ts
        raise KeyError(name)

    # ------------------------------------------------------------------ dicts
    def _attempts(self) -> list[int]:
        return self.attempt.tolist() if self.attempt is not None else [0] * len(self.ts)

    def _rows(self) -> Iterator[tuple]:
        hashes = self.message_hashes()
        m_camp, m_dom = self.m_camp.tolist(), self.m_dom.tolist()
        return zip(self.ts.tolist(), self.type.tolist(), self.bclass.tolist(), self.code.tolist(),
                   self.reason.tolist(), self.msg.tolist(), self.seq.tolist(), self.arrival.tolist(),
                   self._attempts()), \
            hashes, m_camp, m_dom

    def iter_timed(self) -> Iterator[tuple[float, dict]]:
        """``(arrival_time, event)`` pairs in table order (for pacing a live replay)."""
        rows, hashes, m_camp, m_dom = self._rows()
        names, provs = DOMAINS.names, DOMAINS.provider
        for ts, typ, bc, code, reason, msg, seq, arrival, attempt in rows:
            c, d = m_camp[msg], m_dom[msg]
            event = {
                "event_id": self.event_id(seq),
                "provider": self.camp_esp[c],
                "type": TYPE_NAMES[typ],
                "bounce_class": BOUNCE_NAMES[bc] if bc >= 0 else None,
                "timestamp": ts,
                "campaign": self.campaigns[c],
                "sending_domain": self.camp_sdom[c],
                "ip_pool": self.camp_pool[c],
                "recipient_domain": names[d],
                "recipient_hash": hashes[msg],
                "mailbox_provider": provs[d],
                "smtp_code": code or None,
                "reason": self.reasons[reason] if reason >= 0 else None,
                "message_id": self.message_id(msg),
            }
            if attempt:
                event["attempt"] = attempt
            yield arrival, event

    def __iter__(self) -> Iterator[dict]:
        for _, event in self.iter_timed():
            yield event

    # ------------------------------------------------------------------ JSONL
    def write_jsonl(self, out: IO[str], chunk: int = 20_000) -> int:
        """Write one canonical JSON object per line; returns the number of lines.

        The text equals ``detector.event.dumps(event)`` for every row. The fields that
        depend only on the message are pre-joined once per message, so each line is a
        single %-format of nine pieces."""
        hashes = self.message_hashes()
        js = json.dumps  # escapes each distinct string once
        camp_j = [js(s) for s in self.campaigns]
        esp_j = [js(s) for s in self.camp_esp]
        sdom_j = [js(s) for s in self.camp_sdom]
        pool_j = [js(s) for s in self.camp_pool]
        dom_j = [js(s) for s in DOMAINS.names]
        mp_j = [js(s) for s in DOMAINS.provider]
        type_j = [js(s) for s in TYPE_NAMES]
        bc_j = [js(s) for s in BOUNCE_NAMES] + ["null"]          # index -1 -> null
        reason_j = [js(s) for s in self.reasons] + ["null"]
        prefix = self.id_prefix
        head_c = [f'"campaign":{camp_j[c]},"event_id":"{prefix}-' for c in range(len(self.campaigns))]
        heads, mids, tails = [], [], []
        for msg, (c, d) in enumerate(zip(self.m_camp.tolist(), self.m_dom.tolist())):
            heads.append(head_c[c])
            mids.append(f'"ip_pool":{pool_j[c]},"mailbox_provider":{mp_j[d]},"message_id":"{prefix}.{msg:09x}.'
                        f'{self.camp_esp[c]}","provider":{esp_j[c]},"reason":')
            tails.append(f',"recipient_domain":{dom_j[d]},"recipient_hash":"{hashes[msg]}",'
                         f'"sending_domain":{sdom_j[c]},"smtp_code":')
        code_j = {0: "null"}
        for code in np.unique(self.code).tolist():
            code_j.setdefault(code, str(code))
        fmt = '{%s"bounce_class":%s,%s%010x",%s%s%s%s,"timestamp":%r,"type":%s}\n'
        att_j = {0: ""}
        n = 0
        ts_l, type_l, bc_l = self.ts.tolist(), self.type.tolist(), self.bclass.tolist()
        code_l, reason_l, msg_l, seq_l = self.code.tolist(), self.reason.tolist(), self.msg.tolist(), self.seq.tolist()
        att_l = self._attempts()
        for a in set(att_l):
            att_j.setdefault(a, f'"attempt":{a},')
        for lo in range(0, len(ts_l), chunk):
            hi = lo + chunk
            out.write("".join([
                fmt % (att_j[a], bc_j[bc], heads[m], seq, mids[m], reason_j[r], tails[m], code_j[code], ts, type_j[t])
                for ts, t, bc, code, r, m, seq, a in zip(ts_l[lo:hi], type_l[lo:hi], bc_l[lo:hi], code_l[lo:hi],
                                                         reason_l[lo:hi], msg_l[lo:hi], seq_l[lo:hi],
                                                         att_l[lo:hi])]))
            n += min(hi, len(ts_l)) - lo
        return n
