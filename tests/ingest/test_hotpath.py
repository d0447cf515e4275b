"""The fast paths of the batch hot path give exactly what the slow, obvious code gives:
message chunking, the precomputed HMAC, the trusted event build, JSON decoding."""
from __future__ import annotations

import hashlib
import hmac
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detector.event import FIELDS, SPARSE_FIELDS, EventError, make_event
from ingest import fastjson
from ingest.dedup import ExpiringSet
from ingest.errors import PayloadError
from ingest.privacy import RecipientReducer, redact
from ingest.producer import encode_event_messages
from ingest.providers.common import Context, _domain_of, _label_of, _scrub_exact, attempt_number
from streams.codec import decode_events

from .helpers import make_config


def event(i: int, reason: str = "ok") -> dict:
    return make_event(event_id=f"t:{i}", provider="sendgrid", type="delivered", timestamp=1.7e9 + i,
                      campaign="c", recipient_domain="gmail.com", reason=reason)


def test_one_message_per_request_within_limits():
    events = [event(i) for i in range(1000)]
    (((start, stop), value),) = encode_event_messages(events)
    assert (start, stop) == (0, 1000)
    good, bad = decode_events(value)           # the detection worker's decoder
    assert good == events and not bad
    assert b" " not in value.replace(b"1.7e9", b"")  # compact


@pytest.mark.parametrize("n,max_events,max_bytes", [(1001, 1000, 900 * 1024), (250, 64, 10**6),
                                                     (300, 1000, 20_000), (7, 3, 1024)])
def test_split_by_count_and_bytes_keeps_order_and_spans(n, max_events, max_bytes):
    events = [event(i, reason="x" * (i % 50)) for i in range(n)]
    chunks = encode_event_messages(events, max_events, max_bytes)
    assert len(chunks) > 1
    rebuilt = []
    for (start, stop), value in chunks:
        assert 0 < stop - start <= max_events and len(value) <= max_bytes
        good, bad = decode_events(value)
        assert good == events[start:stop] and not bad
        rebuilt.extend(good)
    assert rebuilt == events
    assert [c[0][0] for c in chunks[1:]] == [c[0][1] for c in chunks[:-1]]  # contiguous spans


def test_an_event_larger_than_the_byte_limit_gets_its_own_message():
    events = [event(0), event(1, reason="y" * 400), event(2)]
    chunks = encode_event_messages(events, 1000, 1024 - 700)
    assert [span for span, _ in chunks] == [(0, 1), (1, 2), (2, 3)]
    assert encode_event_messages([], 10, 1024) == []


@pytest.mark.parametrize("key", [b"k", b"test-recipient-hash-key", b"x" * 64, b"y" * 65, bytes(range(200))])
def test_precomputed_hmac_is_hmac_sha256(key):
    reducer = RecipientReducer(key)
    for address in ("Jane.Doe@Example.COM", "a@b.c", "\u00e9l\u00e8ve@exemple.fr"):
        bare = address.lower()
        assert reducer.reduce(address)["recipient_hash"] == hmac.new(key, bare.encode(), hashlib.sha256).hexdigest()


texts = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(
    ["", "  ", "spring", "550 5.1.1 <a@b.c>", "@", "x" * 600, "<jane@gmail.com>", " Sender <s@Example.org> "]))


@settings(max_examples=400, deadline=None)
@given(etype=st.sampled_from(["delivered", "bounced", "opened", "bogus"]),
       bclass=st.sampled_from([None, "hard", "soft", "block", "undetermined", "weird"]),
       ts=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 2**40)),
       campaign=st.one_of(st.none(), st.text(max_size=5)), reason=texts, message_id=texts,
       ip_pool=texts, sending_domain=texts, smtp=st.one_of(st.none(), st.integers(0, 700)),
       provider_id=st.one_of(st.none(), st.text(min_size=1, max_size=6)),
       attempt=st.one_of(st.none(), st.integers(-2, 10), st.sampled_from(["5", " 2", "x", "0", 3.0, 2.5, True])))
def test_trusted_event_build_equals_the_schema(etype, bclass, ts, campaign, reason, message_id, ip_pool,
                                               sending_domain, smtp, provider_id, attempt):
    """Context.event skips validate_event when it can prove the result; compare with the
    slow path (build the same fields, then make_event) on arbitrary field values."""
    cfg = make_config()
    cfg.default_campaign = campaign if campaign is not None else "(none)"
    ctx = Context("sendgrid", cfg, ("category",))
    kwargs = dict(raw_for_campaign={}, recipient="Jane@Gmail.com", recipient_field="email", type=etype,
                  timestamp=ts, provider_id=provider_id, bounce_class=bclass, smtp_code=smtp, reason=reason,
                  message_id=message_id, sending_domain=sending_domain, ip_pool=ip_pool,
                  attempt=attempt)
    try:
        fast = ctx.event(**kwargs)
    except PayloadError as exc:
        fast = ("error", str(exc))
    slow_fields = ctx.reducer.reduce("Jane@Gmail.com", "email")
    slow_fields.update(
        provider="sendgrid", type=etype, timestamp=ts, bounce_class=bclass if etype == "bounced" else None,
        campaign=ctx.campaign({}), smtp_code=smtp if isinstance(smtp, int) and 200 <= smtp <= 599 else None,
        reason=(redact(reason)[:500] if isinstance(reason, str) and reason.strip() else None),
        message_id=(_scrub_exact(message_id, "Jane@Gmail.com")[:200] if message_id not in (None, "") else None),
        sending_domain=ctx_domain(sending_domain), ip_pool=_label_of(ip_pool),
        event_id=f"sendgrid:{provider_id}" if provider_id else None)
    if attempt_number(attempt) is not None:
        slow_fields["attempt"] = attempt_number(attempt)
    try:
        slow = make_event(**slow_fields)
    except EventError as exc:
        slow = ("error", str(exc))
    assert fast == slow
    if isinstance(fast, dict):
        sparse = {f for f in SPARSE_FIELDS if f not in fast}
        assert set(fast) == set(FIELDS) - sparse
        assert type(fast["timestamp"]) is float and math.isfinite(fast["timestamp"])


def ctx_domain(value):
    return _domain_of(value)


def test_fastjson_accepts_exactly_what_json_accepts():
    for body in (b'[1, 2.5, -0, 1e-7, "\\u00e9", null, 18446744073709551615]', b'{"a": NaN, "b": -Infinity}',
                 b'[1E400]', b'["\\ud800"]', '{"k": "\u00e9", "k": 2}'.encode()):
        assert repr(fastjson.loads(body)) == repr(json.loads(body))
    # the one documented difference (orjson present): beyond 64 bits an integer is a float
    big = fastjson.loads(b"[123456789012345678901234567890]")[0]
    assert big == 123456789012345678901234567890 or big == 1.2345678901234568e+29
    for body in (b"[{", b"", b"\xff\xfe", b"[1,]"):
        with pytest.raises(ValueError) as fast:
            fastjson.loads(body)
        with pytest.raises(ValueError) as slow:
            json.loads(body)
        assert type(fast.value) is type(slow.value) and str(fast.value) == str(slow.value)
    assert json.loads(fastjson.dumps_compact([{"a": 2**70, "b": "é"}])) == [{"a": 2**70, "b": "é"}]


def test_expiring_set_batch_add_and_snapshot():
    now = [0.0]
    s = ExpiringSet(10, 5, clock=lambda: now[0])
    s.add_many(["a", "b", "c"])
    now[0] = 5
    s.add_many(["d", "e", "f", "a"])   # size bound evicts the oldest ("b")
    assert set(s.snapshot()) == {"c", "d", "e", "f", "a"}
    now[0] = 12                          # "c" (t=0) expired; "a" was refreshed at t=5
    assert set(s.snapshot()) == {"d", "e", "f", "a"} and "c" not in s


campaign_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(allow_nan=False), st.text(max_size=4),
              st.sampled_from(["", "  ", " spring "])),
    lambda children: st.one_of(st.lists(children, max_size=3), st.dictionaries(st.sampled_from(["a", "b"]),
                                                                                children, max_size=2)),
    max_leaves=6)


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.dictionaries(st.sampled_from(["campaign", "category", "tag", "a"]), campaign_values,
                                     max_size=4), campaign_values),
       paths=st.lists(st.sampled_from(["campaign", "category", "tag", "a.b", "category.0"]), min_size=1,
                      max_size=3),
       default=st.sampled_from(["(none)", ""]))
def test_campaign_resolver_equals_resolve_campaign(raw, paths, default):
    from ingest.campaign import CampaignResolver, resolve_campaign
    assert CampaignResolver(paths, default)(raw) == resolve_campaign(raw, paths, default)
