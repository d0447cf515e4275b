"""Delivery guarantees without Kafka: retries, Retry-After, dead letters, idempotency across restarts."""
from __future__ import annotations

import asyncio

from alerting.consumer import process_record
from tests.alerting.harness import build
from tests.alerting.helpers import Recorder, make_alert, resolved

SLACK, PD = "/slack/T1/B1/secret", "/pd/enqueue"


def run(coro):
    return asyncio.run(coro)


def test_delivers_once_to_each_receiver_and_is_idempotent(tmp_path):
    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec)
        first = await h.dispatcher.handle(make_alert())
        again = await h.dispatcher.handle(make_alert())
        await h.close(), await rec.stop()
        return rec, h, first, again
    rec, h, first, again = run(go())
    assert sorted((o.receiver, o.outcome) for o in first) == [("ops/pagerduty/0", "delivered"),
                                                              ("ops/slack/0", "delivered")]
    assert {o.outcome for o in again} == {"duplicate"}
    assert len(rec.at(SLACK)) == 1 and len(rec.at(PD)) == 1
    assert h.sample("ddetect_alert_delivery_attempts_total", receiver="slack", outcome="ok") == 1


def test_500s_then_success_retries_with_backoff(tmp_path):
    async def go():
        rec = await Recorder(script={SLACK: [(500, {}), (502, {})]}).start()
        h = await build(tmp_path, rec)
        out = await h.dispatcher.handle(make_alert())
        await h.close(), await rec.stop()
        return rec, h, out
    rec, h, out = run(go())
    slack = next(o for o in out if o.receiver == "ops/slack/0")
    assert (slack.outcome, slack.attempts) == ("delivered", 3) and len(rec.at(SLACK)) == 3
    assert len(h.sleep.delays) == 2
    assert 0 <= h.sleep.delays[0] <= 0.5 and 0 <= h.sleep.delays[1] <= 1.0  # full jitter, base 0.5 doubling
    assert h.sample("ddetect_alert_delivery_attempts_total", receiver="slack", outcome="retryable") == 2
    assert h.sample("ddetect_alert_delivery_duration_seconds_count", receiver="slack") == 3
    assert h.dlq.read() == []


def test_429_retry_after_is_honoured(tmp_path):
    async def go():
        rec = await Recorder(script={PD: [(429, {"Retry-After": "7"})]}).start()
        h = await build(tmp_path, rec)
        out = await h.dispatcher.handle(make_alert())
        await h.close(), await rec.stop()
        return rec, h, out
    rec, h, out = run(go())
    assert {o.outcome for o in out} == {"delivered"} and len(rec.at(PD)) == 2
    assert h.sleep.delays and 7.0 <= h.sleep.delays[0] <= 7.5


def test_permanent_400_goes_to_dead_letter_once_and_others_still_deliver(tmp_path):
    async def go():
        rec = await Recorder(script={SLACK: [(400, {})]}).start()
        h = await build(tmp_path, rec)
        out = await h.dispatcher.handle(make_alert())
        again = await h.dispatcher.handle(make_alert())  # redelivered message: no second DLQ record
        await h.close(), await rec.stop()
        return rec, h, out, again
    rec, h, out, again = run(go())
    by = {o.receiver: o for o in out}
    assert by["ops/slack/0"].outcome == "dead_letter" and by["ops/slack/0"].attempts == 1
    assert by["ops/pagerduty/0"].outcome == "delivered" and len(rec.at(SLACK)) == 1
    records = h.dlq.read()
    assert len(records) == 1 and records[0]["receiver"] == "ops/slack/0" and "HTTP 400" in records[0]["reason"]
    assert records[0]["alert"]["alert_id"] == "a:3f2c0001" and records[0]["key"] == make_alert()["dedup_key"]
    assert "secret" not in records[0]["reason"]
    assert h.sample("ddetect_dead_letters_total", source="alert-delivery") == 1
    assert {o.outcome for o in again} == {"duplicate"}


def test_receiver_down_exhausts_retries_then_dead_letters(tmp_path):
    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec, slack_url="http://127.0.0.1:9/slack/down")  # port 9: nothing listens
        out = await h.dispatcher.handle(make_alert())
        await h.close(), await rec.stop()
        return h, out
    h, out = run(go())
    slack = next(o for o in out if o.receiver == "ops/slack/0")
    assert slack.outcome == "dead_letter" and slack.attempts == 4
    assert "retries exhausted after 4 attempts" in h.dlq.read()[0]["reason"]
    assert len(h.sleep.delays) == 3


def test_restart_mid_delivery_no_loss_no_duplicate_page(tmp_path):
    """Crash while Slack hangs after PagerDuty was paged; the re-read message must not page again."""
    async def go():
        rec = Recorder()
        rec.hold[SLACK] = asyncio.Event()
        await rec.start()
        h = await build(tmp_path, rec)
        task = asyncio.create_task(h.dispatcher.handle(make_alert()))
        while not (rec.at(SLACK) and h.ledger.get("ops/pagerduty/0", make_alert()["dedup_key"], "firing",
                                                  "a:3f2c0001")):
            await asyncio.sleep(0.01)
        row = h.ledger.get("ops/pagerduty/0", make_alert()["dedup_key"], "firing", "a:3f2c0001")
        task.cancel()  # the process dies here: offset not committed
        try:
            await task
        except asyncio.CancelledError:
            pass
        await h.close()
        rec.hold.pop(SLACK).set()
        h2 = await build(tmp_path, rec)  # restart on the same data dir
        out = await h2.dispatcher.handle(make_alert())
        await h2.close(), await rec.stop()
        return rec, row, out
    rec, row, out = run(go())
    assert row.state == "delivered"
    assert len(rec.at(PD)) == 1  # no second page
    assert len(rec.at(SLACK)) == 2  # the unconfirmed Slack post is re-sent (at-least-once), nothing lost
    assert {(o.receiver, o.outcome) for o in out} == {("ops/pagerduty/0", "duplicate"), ("ops/slack/0", "delivered")}


def test_repeat_interval_and_open_incident_suppression(tmp_path):
    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec)
        a = make_alert(severity="warning")
        await h.dispatcher.handle(a)
        h.clock.now += 3600
        early = await h.dispatcher.handle(a)  # re-emitted within 4h
        other = await h.dispatcher.handle(make_alert(severity="warning", alert_id="a:other"))  # same incident key
        h.clock.now += 4 * 3600
        late = await h.dispatcher.handle(a)  # reminder after repeat_interval
        await h.dispatcher.handle(resolved(a))
        fresh = await h.dispatcher.handle(make_alert(severity="warning", alert_id="a:new"))  # new incident
        await h.close(), await rec.stop()
        return rec, early, other, late, fresh
    rec, early, other, late, fresh = run(go())
    assert {o.outcome for o in early} == {"duplicate"}
    assert {o.outcome for o in other} == {"suppressed"}
    assert {o.outcome for o in late} == {"delivered"}
    assert {o.outcome for o in fresh} == {"delivered"}
    events = [r.json()["event_action"] for r in rec.at(PD)]
    assert events == ["trigger", "trigger", "resolve", "trigger"]


def test_invalid_and_non_json_messages_are_dead_lettered(tmp_path):
    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec)
        await process_record(h.dispatcher, b"{not json")
        await process_record(h.dispatcher, b'{"alert_id": "x", "status": "burning"}')
        await h.close(), await rec.stop()
        return rec, h
    rec, h = run(go())
    reasons = [r["reason"] for r in h.dlq.read()]
    assert reasons[0].startswith("not JSON") and "status must be one of firing, resolved" in reasons[1]
    assert h.sample("ddetect_dead_letters_total", source="alerts") == 2 and rec.requests == []
