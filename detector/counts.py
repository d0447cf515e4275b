"""Per-window event counters and the columnar batch that fills them.

Detection never looks at single events: it reads how many events of each kind a scope
saw in a window. Counting is therefore the hot path, and it is done on columns (numpy
arrays of small integer codes), so a batch of a million events costs a few sorts and
bincounts rather than a million Python iterations.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

import numpy as np

from .event import BOUNCE_CLASSES, EVENT_TYPES, UNATTRIBUTED_CAMPAIGN
from .feedback_loops import FEEDBACK_LOOPS, flags as feedback_loop_flags
from .gcpause import gc_paused
from .smtp_codes import is_throttle

if TYPE_CHECKING:
    from .retries import RetryMemory

#: Counter layout of one window: one slot per event type, then one per bounce class, then the
#: sends and delivery attempts of messages that name no campaign (the volume a campaign's
#: send does not explain: an IP pool's surge of unattributed mail is the security signal).
COUNTERS: tuple[str, ...] = (EVENT_TYPES + tuple(f"bounced_{c}" for c in BOUNCE_CLASSES)
                             + ("unattributed_accepted", "unattributed_attempts", "throttled", "first_attempts",
                                "delivered_fbl", "complained_fbl", "attempt_trials", "refused"))
#: ``throttled``: first-attempt deferrals whose reply says the provider is throttling or
#: blocking the sender (:mod:`detector.smtp_codes`); ``first_attempts``: each message's first
#: delivery attempt (numbered by the ESP, or told by :mod:`detector.retries`);
#: ``delivered_fbl``/``complained_fbl``: deliveries and complaints at mailbox providers that run
#: a per-message feedback loop (:mod:`detector.feedback_loops`), the complaint rate's terms;
#: ``attempt_trials``: each message's first delivery attempt the stream shows (a first attempt,
#: or, where first attempts cannot be told, every delivery and bounce), one trial per message;
#: ``refused``: the attempt trials the provider refused (a block bounce, or a deferral with its
#: throttling/blocking reply): the provider's verdict at the first attempt, not after the retries.
N_COUNTERS = len(COUNTERS)
COUNTER_INDEX = {name: i for i, name in enumerate(COUNTERS)}
TYPE_CODE = {t: i for i, t in enumerate(EVENT_TYPES)}
BOUNCE_CODE = {c: i for i, c in enumerate(BOUNCE_CLASSES)}
_BOUNCE_OFFSET = len(EVENT_TYPES)
#: Event types that are the outcome of a delivery attempt.
_ATTEMPT_TYPES = np.zeros(len(EVENT_TYPES), dtype=bool)
_ATTEMPT_TYPES[[TYPE_CODE["delivered"], TYPE_CODE["bounced"], TYPE_CODE["deferred"]]] = True

#: Events that carry a reason worth showing as evidence.
_REASON_MASK = np.zeros(len(EVENT_TYPES), dtype=bool)
_REASON_MASK[[TYPE_CODE[t] for t in ("bounced", "complained", "deferred", "dropped")]] = True

#: Event fields a scope can be built from.
SCOPE_FIELDS = ("campaign", "mailbox_provider", "sending_domain", "ip_pool", "recipient_domain", "provider")


class Vocabulary:
    """Interns strings to small integer codes (None -> -1), shared by all batches."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.values: list[str] = []

    def code(self, value: str | None) -> int:
        if value is None:
            return -1
        c = self.codes.get(value)
        if c is None:
            c = self.codes[value] = len(self.values)
            self.values.append(value)
        return c


@dataclass
class EventBatch:
    """A columnar batch of canonical events.

    ``fields`` maps each scope field to an int32 code column (-1 for null); the codes
    index ``vocab[field].values``. Reasons are kept only for the few events that carry
    one (bounces, complaints, deferrals, drops), as (row, smtp_code, reason) triples.
    """

    timestamp: np.ndarray
    type_code: np.ndarray
    bounce_code: np.ndarray
    fields: dict[str, np.ndarray]
    vocab: dict[str, Vocabulary]
    reasons: list[tuple[int, int | None, str | None]] = field(default_factory=list)
    #: Rows that are first-attempt throttle/block deferrals (None: none in the batch).
    throttled: np.ndarray | None = None
    #: Rows that are a message's first delivery attempt (delivered, bounced or deferred with
    #: ``attempt == 1``, or known first from the retry memory): one per message, so they
    #: stand in for sends where the stream posts no send events (None: none known).
    first_attempts: np.ndarray | None = None
    #: Rows that are a message's attempt trial (``attempt_trials``), and those of them refused
    #: (None: none in the batch).
    attempt_trials: np.ndarray | None = None
    refused: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.timestamp)

    @classmethod
    def from_events(cls, events: Sequence[Mapping], vocab: dict[str, Vocabulary] | None = None,
                    retries: "RetryMemory | None" = None) -> "EventBatch":
        """Build a batch from validated canonical events (dicts).

        ``retries`` (:class:`~detector.retries.RetryMemory`, kept across batches) tells a
        message's first attempt from its retries where the ESP does not number them."""
        if vocab is None:
            vocab = {f: Vocabulary() for f in SCOPE_FIELDS}
        n = len(events)
        # One pass over the dicts (each is touched once), then one C-level pass per column.
        with gc_paused():  # a tuple per event: no collections while they are built and dropped
            rows = [(e["timestamp"], e["type"], e.get("bounce_class"), e.get("attempt"),
                     e.get("campaign"), e.get("mailbox_provider"), e.get("sending_domain"), e.get("ip_pool"),
                     e.get("recipient_domain"), e.get("provider")) for e in events]  # as SCOPE_FIELDS
            if n:
                ts_col, type_col, bounce_col, attempt_col, *field_cols = zip(*rows)
            else:
                ts_col = type_col = bounce_col = attempt_col = ()
                field_cols = [()] * len(SCOPE_FIELDS)
            del rows
        ts = np.fromiter(ts_col, dtype=np.float64, count=n)
        tcode = np.fromiter(map(TYPE_CODE.__getitem__, type_col), dtype=np.int8, count=n)
        bcode = np.fromiter(map(BOUNCE_CODE.get, bounce_col, repeat(-1)), dtype=np.int8, count=n)
        cols = {}
        for f, values in zip(SCOPE_FIELDS, field_cols):
            voc = vocab[f]
            if type(voc) is Vocabulary:
                codes = voc.codes
                for v in dict.fromkeys(values):  # new values get codes in order of first occurrence
                    if v is not None and v not in codes:
                        voc.code(v)
                cols[f] = np.fromiter(map(codes.get, values, repeat(-1)), dtype=np.int32, count=n)
            else:
                cols[f] = np.fromiter(map(voc.code, values), dtype=np.int32, count=n)
        reasons = []
        for i in np.flatnonzero(_REASON_MASK[tcode]).tolist():  # bounces, complaints, deferrals, drops
            e = events[i]
            if e.get("reason") or e.get("smtp_code"):
                reasons.append((i, e.get("smtp_code"), e.get("reason")))
        attempt = np.fromiter([a or 0 for a in attempt_col], dtype=np.int16, count=n)
        is_attempt = _ATTEMPT_TYPES[tcode]
        first = (attempt == 1) & is_attempt
        # an outcome whose first-ness nobody can tell (unnumbered, no message_id or no memory)
        # is its own trial: the stream shows nothing else of that message
        unknown = is_attempt & (attempt == 0) & (tcode != _DEFERRED)
        if retries is not None:
            rows = np.flatnonzero(is_attempt)
            row_list = rows.tolist()
            picked = [events[i] for i in row_list]
            verdicts = retries.first_attempts([e.get("message_id") for e in picked],
                                              (tcode[rows] == _DEFERRED).tolist(),
                                              [e["timestamp"] for e in picked])
            new_first, known = [], []
            for i, verdict, a in zip(row_list, verdicts, attempt[rows].tolist()):
                if verdict is not None and not a:
                    known.append(i)
                    if verdict:
                        new_first.append(i)
            if new_first:
                first[new_first] = True
            if known:
                unknown[known] = False
        # a bounce with a transient (4xx) reply ends a message the ESP retried until it gave up:
        # its first attempt was hours earlier (an ESP that posts no deferrals shows nothing else
        # of it), so it is no trial of the window it arrives in, where it would read as a burst
        unnumbered_bounce = (tcode == _BOUNCED) & (attempt == 0)
        ended = [i for i, code, _ in reasons if code is not None and 400 <= code < 500 and unnumbered_bounce[i]]
        if ended:
            first[ended] = False
            unknown[ended] = False
        throttled = None
        # first-attempt deferrals only: a retry of a throttled message is the same trial again,
        # and after a bulk send its retries would outnumber the sends
        first_deferred = np.flatnonzero(first & (tcode == _DEFERRED))
        if first_deferred.size:
            rows = [i for i in first_deferred.tolist() if is_throttle(events[i].get("mailbox_provider"),
                                                                      events[i].get("smtp_code"),
                                                                      events[i].get("reason"))]
            if rows:
                throttled = np.array(rows, dtype=np.int64)
        first_attempts = np.flatnonzero(first)
        trial = first | unknown
        refused_mask = trial & (bcode == _BLOCK)
        if throttled is not None:
            refused_mask[throttled] = True
        trials, refused = np.flatnonzero(trial), np.flatnonzero(refused_mask)
        return cls(ts, tcode, bcode, cols, vocab, reasons, throttled, first_attempts if first_attempts.size else None,
                   trials if trials.size else None, refused if refused.size else None)


@dataclass
class ScopeDelta:
    """What one batch added to one scope: counter lists per window start, and reasons."""

    scope_id: str
    scope: dict[str, str]
    windows: dict[float, list[int]]
    reasons: dict[float, dict[str, int]]
    #: Per window start that has any marks, the order of the scope's trials in this batch, for sequential
    #: (per-message) CUSUM charts: ``[n, position, slot, timestamp, position, slot, ...]``
    #: where ``n`` counts the events of the sequenced types and each triple marks one of them
    #: that is not a plain delivery (``slot`` is a counter index: a bounce carries its class
    #: slot). Deliveries are the unmarked positions, so the list stays short; it is flat
    #: because one small object per bounce would wake Python's cyclic GC over the whole state.
    #: A window with deliveries only has no entry: its ``n`` is in :attr:`windows`.
    seq: dict[float, list] = field(default_factory=dict)


def scope_id(fields: Sequence[str], values: Sequence[str]) -> str:
    """Stable text key of a scope, e.g. ``campaign=spring|mailbox_provider=gmail``."""
    return "|".join(f"{f}={v}" for f, v in zip(fields, values))


def reason_key(smtp_code: int | None, reason: str | None) -> str:
    return f"{smtp_code if smtp_code is not None else ''}|{reason or ''}"


_DENSE_LIMIT = 1 << 22


def _factorize(codes: np.ndarray, space: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique codes and each row's index into them.

    When the code space is small (the usual case: campaigns x providers), a dense
    lookup table does it in linear time; np.unique's sort is the fallback.
    """
    if space <= _DENSE_LIMIT:
        seen = np.zeros(space, dtype=bool)
        seen[codes] = True
        uniq = np.flatnonzero(seen)
        lookup = np.empty(space, dtype=np.int64)
        lookup[uniq] = np.arange(uniq.size)
        return uniq, lookup[codes]
    uniq, inverse = np.unique(codes, return_inverse=True)
    return uniq, inverse.astype(np.int64)


_DELIVERED = TYPE_CODE["delivered"]
_DEFERRED = TYPE_CODE["deferred"]
_BOUNCED = TYPE_CODE["bounced"]
_BLOCK = BOUNCE_CODE["block"]
_ATTEMPT_TRIALS = COUNTER_INDEX["attempt_trials"]
_REFUSED = COUNTER_INDEX["refused"]
_UNATTRIBUTED_ACCEPTED = COUNTER_INDEX["unattributed_accepted"]
_UNATTRIBUTED_ATTEMPTS = COUNTER_INDEX["unattributed_attempts"]


_COMPLAINED = TYPE_CODE["complained"]
#: Per event type code: the counter it also counts in at a feedback-loop provider (-1: none).
FBL_SLOT = np.full(len(EVENT_TYPES), -1, dtype=np.int64)
FBL_SLOT[_DELIVERED] = COUNTER_INDEX["delivered_fbl"]
FBL_SLOT[_COMPLAINED] = COUNTER_INDEX["complained_fbl"]


def _extra_slots(batch: EventBatch, feedback_loops: frozenset[str]) -> tuple[np.ndarray, np.ndarray]:
    """Rows counted a second time, and their slot: bounces by class, unattributed sends/attempts,
    deliveries and complaints at feedback-loop providers."""
    rows, slots = [], []
    mbp = batch.fields.get("mailbox_provider")
    if mbp is not None:
        tc = batch.type_code
        at_loop = feedback_loop_flags(batch.vocab["mailbox_provider"].values, feedback_loops)
        if at_loop.any():
            fbl = np.flatnonzero(((tc == _DELIVERED) | (tc == _COMPLAINED)) & (mbp >= 0)
                                 & at_loop[np.maximum(mbp, 0)])
            if fbl.size:
                rows.append(fbl)
                slots.append(FBL_SLOT[tc[fbl]])
    bounce_rows = np.flatnonzero(batch.bounce_code >= 0)
    if bounce_rows.size:
        rows.append(bounce_rows)
        slots.append(_BOUNCE_OFFSET + batch.bounce_code[bounce_rows].astype(np.int64))
    camp = batch.fields.get("campaign")
    if camp is not None:
        anon = camp < 0   # no campaign, or the one ingest gives mail that names none
        placeholder = batch.vocab["campaign"].codes.get(UNATTRIBUTED_CAMPAIGN)
        if placeholder is not None:
            anon = anon | (camp == placeholder)
        if anon.any():
            tc = batch.type_code
            acc = np.flatnonzero(anon & (tc == TYPE_CODE["accepted"]))
            att = np.flatnonzero(anon & ((tc == _DELIVERED) | (tc == TYPE_CODE["bounced"])))
            rows += [acc, att]
            slots += [np.full(acc.size, _UNATTRIBUTED_ACCEPTED), np.full(att.size, _UNATTRIBUTED_ATTEMPTS)]
    if batch.first_attempts is not None and batch.first_attempts.size:
        rows.append(batch.first_attempts)
        slots.append(np.full(batch.first_attempts.size, COUNTER_INDEX["first_attempts"]))
    if batch.throttled is not None and batch.throttled.size:
        rows.append(batch.throttled)
        slots.append(np.full(batch.throttled.size, COUNTER_INDEX["throttled"]))
    for picked, slot in ((batch.attempt_trials, _ATTEMPT_TRIALS), (batch.refused, _REFUSED)):
        if picked is not None and picked.size:
            rows.append(picked)
            slots.append(np.full(picked.size, slot))
    if not rows:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    return np.concatenate(rows), np.concatenate(slots)


#: A sequence basis (instead of a type mask) for charts whose trials are each message's first
#: attempt: the unmarked positions are attempt trials the provider accepted, the marks refusals.
FIRST_ATTEMPT_BASIS = "first_attempts"


def _basis_masks(batch: EventBatch, basis) -> tuple[np.ndarray, np.ndarray, np.ndarray | int]:
    """Over the batch's rows: which are trials of the sequence, which of them are marked, and
    each mark's counter slot (an array, or one slot for every mark)."""
    tc = batch.type_code
    if isinstance(basis, str):  # FIRST_ATTEMPT_BASIS
        n = len(batch)
        trial = np.zeros(n, dtype=bool)
        if batch.attempt_trials is not None:
            trial[batch.attempt_trials] = True
        mark = np.zeros(n, dtype=bool)
        if batch.refused is not None:
            mark[batch.refused] = True
        return trial, mark, _REFUSED
    trial = basis[tc]
    bc = batch.bounce_code.astype(np.int64)
    return trial, trial & (tc != _DELIVERED), np.where(bc >= 0, _BOUNCE_OFFSET + bc, tc.astype(np.int64))


def _sequence_marks(batch: EventBatch, rows: np.ndarray | None, group: np.ndarray, n_groups: int,
                    masks: tuple[np.ndarray, np.ndarray, np.ndarray | int]) -> tuple[np.ndarray, dict[int, list]]:
    """Trials per group and, for groups that have any, the flat (position, slot, time) marks.

    ``rows`` are the batch rows in the scope (arrival order; None: every row) and ``group``
    their (scope, window) group; ``masks`` is :func:`_basis_masks` of the sequence. Positions
    are ranks in arrival order inside the group, found with one stable (radix) sort.
    """
    trial_all, mark_all, slot_all = masks
    sub = np.flatnonzero(trial_all if rows is None else trial_all[rows])
    g = group[sub]
    per_group = np.bincount(g, minlength=n_groups)
    is_mark = mark_all[sub] if rows is None else mark_all[rows[sub]]
    if not is_mark.any():
        return per_group, {}
    key = g.astype(np.uint16) if n_groups <= 1 << 16 else g  # 16-bit keys sort by radix
    order = np.argsort(key, kind="stable")    # group-major, arrival order inside a group
    at = np.flatnonzero(is_mark[order])       # marks, already sorted by group
    sm = sub[order[at]]
    gm = g[order[at]]
    rank = at - (np.cumsum(per_group) - per_group)[gm]
    r = sm if rows is None else rows[sm]
    slot = slot_all[r] if isinstance(slot_all, np.ndarray) else np.full(r.size, slot_all, dtype=np.int64)
    flat = list(chain.from_iterable(zip(rank.tolist(), slot.tolist(), batch.timestamp[r].tolist())))
    starts = np.flatnonzero(np.r_[True, gm[1:] != gm[:-1]])
    ends = (3 * np.r_[starts[1:], gm.size]).tolist()
    return per_group, {gg: flat[lo:hi] for gg, lo, hi in zip(gm[starts].tolist(), (3 * starts).tolist(), ends)}


def sequence_type_mask(type_names: Iterable[str]) -> np.ndarray:
    """Boolean mask over type codes for :func:`aggregate`'s ``sequences``."""
    mask = np.zeros(len(EVENT_TYPES), dtype=bool)
    for t in type_names:
        mask[TYPE_CODE[t]] = True
    return mask


def _reason_keys(batch: EventBatch) -> list[str]:
    """The evidence key of each of the batch's reasons (the same in every scope)."""
    keys = []
    for r, code, reason in batch.reasons:
        b = batch.bounce_code[r]
        kind = f"bounced_{BOUNCE_CLASSES[b]}" if b >= 0 else EVENT_TYPES[batch.type_code[r]]
        keys.append(f"{kind}|{reason_key(code, reason)}")
    return keys


@dataclass
class ScopeCounts:
    """What one batch added to the scopes of one scope definition, scope by scope (index ``u``).

    The columnar form of :class:`ScopeDelta` that :func:`count_scopes` returns and the engine
    applies without building a delta object per scope: ``sids[u]`` is the scope id,
    ``values[u]`` its field values, ``windows[u]`` its counter lists per window start; the
    scopes with reasons or trial marks have an entry in ``reasons`` / ``seq`` (keyed by ``u``).
    """

    fields: tuple[str, ...]
    sids: list[str]
    values: list[tuple[str, ...]]
    windows: list[dict[float, list[int]]]
    reasons: dict[int, dict[float, dict[str, int]]]
    seq: dict[int, dict[float, list]]
    #: No field value holds a ``|``, so no two scopes (of any definition) share an id.
    plain: bool


def count_scopes(batch: EventBatch, scopes: Iterable[Sequence[str]], window: float,
                 sequences: Mapping[tuple[str, ...], np.ndarray | str] | None = None,
                 feedback_loops: frozenset[str] = FEEDBACK_LOOPS) -> list[ScopeCounts]:
    """The counting of :func:`aggregate`, one :class:`ScopeCounts` per scope definition (in order)."""
    out: list[ScopeCounts] = []
    n = len(batch)
    if n == 0:
        return out
    win_idx = np.floor(batch.timestamp / window).astype(np.int64)
    w0 = int(win_idx.min())
    n_windows = int(win_idx.max()) - w0 + 1
    win_rel = win_idx - w0 if n_windows > 1 else None
    starts = [float((w0 + w) * window) for w in range(n_windows)]
    # One counter slot per event type, plus one per bounce class for bounces.
    slot = batch.type_code.astype(np.int64)
    extra_rows, extra_slots = _extra_slots(batch, feedback_loops)
    if batch.reasons:
        reason_rows = np.fromiter((r for r, _, _ in batch.reasons), dtype=np.int64, count=len(batch.reasons))
        reason_keys = _reason_keys(batch)
        reason_starts = [starts[w] for w in (win_idx[reason_rows] - w0).tolist()]
    basis_masks: dict[int, tuple] = {}  # per sequence basis, computed once per batch
    for fields in scopes:
        cols = [batch.fields[f] for f in fields]
        valid = cols[0] >= 0
        for c in cols[1:]:
            valid &= c >= 0
        radix = [len(batch.vocab[f].values) + 1 for f in fields]
        combined = cols[0].astype(np.int64)
        for r, c in zip(radix[1:], cols[1:]):
            combined *= r
            combined += c
        if valid.all():
            rows = None  # every row: no gathers
            codes, row_slot, row_win = combined, slot, win_rel
        else:
            rows = np.flatnonzero(valid)
            if rows.size == 0:
                continue
            codes, row_slot = combined[rows], slot[rows]
            row_win = None if win_rel is None else win_rel[rows]
        uniq, inverse = _factorize(codes, int(np.prod(radix, dtype=np.float64)))
        n_scopes = uniq.size
        group = inverse if row_win is None else inverse * n_windows + row_win
        n_groups = n_scopes * n_windows
        keys = group * N_COUNTERS
        keys += row_slot
        if extra_rows.size:  # bounces by class, unattributed mail, first attempts, throttled
            keep = valid[extra_rows]
            valid_b = extra_rows[keep]
            if valid_b.size:
                gb = inverse[valid_b] if rows is None else np.searchsorted(uniq, combined[valid_b])
                if win_rel is not None:
                    gb = gb * n_windows + win_rel[valid_b]
                gb *= N_COUNTERS
                gb += extra_slots[keep]
                keys = np.concatenate((keys, gb))
        counts = np.bincount(keys, minlength=n_groups * N_COUNTERS).reshape(n_groups, N_COUNTERS)
        seq_basis = sequences.get(tuple(fields)) if sequences else None
        seqs: dict[int, dict[float, list]] = {}
        if seq_basis is not None:
            masks = basis_masks.get(id(seq_basis))
            if masks is None:
                masks = basis_masks[id(seq_basis)] = _basis_masks(batch, seq_basis)
            seq_n, seq_marks = _sequence_marks(batch, rows, group, n_groups, masks)
            if seq_marks:
                seq_n = seq_n.tolist()
                for g, marks in seq_marks.items():  # in group order: a scope's windows in time order
                    u, w = divmod(g, n_windows)
                    s = seqs.get(u)
                    if s is None:
                        s = seqs[u] = {}
                    s[starts[w]] = [seq_n[g], *marks]
        rows_list = counts.tolist()  # one counter list per (scope, window)
        # each scope's field values and id (as :func:`scope_id`)
        value_cols = []
        rest = uniq
        for i in range(len(fields) - 1, 0, -1):
            rest, digit = np.divmod(rest, radix[i])
            value_cols.append(digit)
        value_cols.append(rest)
        value_cols.reverse()
        value_cols = [[batch.vocab[f].values[d] for d in col.tolist()] for f, col in zip(fields, value_cols)]
        plain = not any("|" in v for col in value_cols for v in col)
        if len(fields) == 1:
            f0 = fields[0]
            sids = [f"{f0}={v}" for v in value_cols[0]]
            scope_values = [(v,) for v in value_cols[0]]
        elif len(fields) == 2:
            f0, f1 = fields
            scope_values = list(zip(*value_cols))
            sids = [f"{f0}={a}|{f1}={b}" for a, b in scope_values]
        else:
            scope_values = list(zip(*value_cols))
            sids = [scope_id(fields, values) for values in scope_values]
        if n_windows == 1:  # every scope found has data in the one window
            s0 = starts[0]
            wins = [{s0: row} for row in rows_list]
        else:
            present = np.count_nonzero(counts.reshape(n_scopes, n_windows, N_COUNTERS), axis=2)
            full = (present.min(axis=1) > 0).tolist()
            present = present.tolist()
            wins = []
            for u, all_present in enumerate(full):
                if all_present:
                    wins.append(dict(zip(starts, rows_list[u * n_windows:(u + 1) * n_windows])))
                else:
                    has, base = present[u], u * n_windows
                    wins.append({starts[w]: rows_list[base + w] for w in range(n_windows) if has[w]})
        reasons: dict[int, dict[float, dict[str, int]]] = {}
        if batch.reasons:
            ok = valid[reason_rows]
            pos = np.searchsorted(uniq, combined[reason_rows]).tolist()
            if not plain:  # scopes sharing an id: their reasons go to the last one (the one kept)
                last = {sid: u for u, sid in enumerate(sids)}
                pos = [last[sids[u]] if ok_i else u for u, ok_i in zip(pos, ok.tolist())]
            for i in np.flatnonzero(ok).tolist():
                u = pos[i]
                per = reasons.get(u)
                if per is None:
                    per = reasons[u] = {}
                bucket = per.get(reason_starts[i])
                if bucket is None:
                    bucket = per[reason_starts[i]] = {}
                key = reason_keys[i]
                bucket[key] = bucket.get(key, 0) + 1
        out.append(ScopeCounts(tuple(fields), sids, scope_values, wins, reasons, seqs, plain))
    return out


def aggregate(batch: EventBatch, scopes: Iterable[Sequence[str]], window: float,
              sequences: Mapping[tuple[str, ...], np.ndarray | str] | None = None,
              feedback_loops: frozenset[str] = FEEDBACK_LOOPS) -> dict[str, ScopeDelta]:
    """Count a batch per (scope, window) for every scope definition, vectorised.

    Events whose scope field is null are not counted in that scope (an event without
    an IP pool says nothing about any pool). For scope definitions in ``sequences``
    (a type mask from :func:`sequence_type_mask`, or :data:`FIRST_ATTEMPT_BASIS`) the deltas also carry the order of
    those events (:attr:`ScopeDelta.seq`). ``feedback_loops`` names the mailbox providers whose
    deliveries and complaints the complaint rate counts (:mod:`detector.feedback_loops`).
    """
    return deltas(count_scopes(batch, scopes, window, sequences, feedback_loops))


def deltas(counted: Iterable[ScopeCounts]) -> dict[str, ScopeDelta]:
    """One :class:`ScopeDelta` per scope id (a later scope of the same id replaces an earlier one)."""
    out: dict[str, ScopeDelta] = {}
    for c in counted:
        fields, reasons, seq = c.fields, c.reasons, c.seq
        for u, (sid, values, wins) in enumerate(zip(c.sids, c.values, c.windows)):
            out[sid] = ScopeDelta(sid, dict(zip(fields, values)), wins, reasons.get(u, {}), seq.get(u, {}))
    return out
