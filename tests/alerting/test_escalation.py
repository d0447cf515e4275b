"""Escalation of unacknowledged critical alerts, ack over HTTP and CLI, resolve, and the router's web side."""
from __future__ import annotations

import asyncio
import logging

from aiohttp import ClientSession, web

from alerting.ack_cli import main_ack
from alerting.web import make_app
from tests.alerting.harness import build
from tests.alerting.helpers import Recorder, make_alert, resolved

PAGER, BOSS, PD, SLACK = "/pager/enqueue", "/boss", "/pd/enqueue", "/slack/T1/B1/secret"
KEY = make_alert()["dedup_key"]


def run(coro):
    return asyncio.run(coro)


async def _serve(app) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"


def test_unacked_critical_escalates_level_by_level_and_survives_restart(tmp_path):
    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec)
        t0 = h.clock.now
        await h.dispatcher.handle(make_alert())
        h.clock.now = t0 + 14 * 60
        before = await h.escalator.tick()
        h.clock.now = t0 + 15 * 60
        level1 = await h.escalator.tick()
        await h.close()
        h = await build(tmp_path, rec, clock=h.clock)  # restart between levels
        again = await h.escalator.tick()
        h.clock.now = t0 + 45 * 60
        level2 = await h.escalator.tick()
        esc = h.ledger.escalations(KEY)
        await h.close(), await rec.stop()
        return rec, before, level1, again, level2, esc
    rec, before, level1, again, level2, esc = run(go())
    assert before == [] and again == []
    assert [(o.receiver, o.outcome) for o in level1] == [("pager/pagerduty/0", "delivered")]
    assert [(o.receiver, o.outcome) for o in level2] == [("boss/webhook/0", "delivered")]
    assert len(rec.at(PAGER)) == 1 and len(rec.at(BOSS)) == 1
    assert rec.at(BOSS)[0].json()["alert"]["escalation_level"] == 2
    assert [(e.state, e.level) for e in esc] == [("done", 2)]


def test_warning_alerts_do_not_escalate(tmp_path):
    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec)
        await h.dispatcher.handle(make_alert(severity="warning"))
        h.clock.now += 24 * 3600
        out = await h.escalator.tick()
        await h.close(), await rec.stop()
        return out, rec
    out, rec = run(go())
    assert out == [] and rec.at(PAGER) == []


def test_resolved_goes_to_escalated_receivers_and_stops_escalation(tmp_path):
    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec)
        alert = make_alert()
        await h.dispatcher.handle(alert)
        h.clock.now += 16 * 60
        await h.escalator.tick()
        out = await h.dispatcher.handle(resolved(alert))
        h.clock.now += 3600
        later = await h.escalator.tick()
        esc = h.ledger.escalations(KEY)
        await h.close(), await rec.stop()
        return rec, out, later, esc
    rec, out, later, esc = run(go())
    assert sorted(o.receiver for o in out if o.outcome == "delivered") == [
        "ops/pagerduty/0", "ops/slack/0", "pager/pagerduty/0"]
    assert [r.json()["event_action"] for r in rec.at(PAGER)] == ["trigger", "resolve"]
    assert later == [] and rec.at(BOSS) == [] and esc[0].state == "resolved"


def test_ack_over_http_and_cli_stops_escalation(tmp_path):
    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec)
        runner, url = await _serve(make_app(h.ledger, h.metrics.registry, clock=h.clock))
        second = make_alert(dedup_key="complaint|campaign=x", category="technical")
        await h.dispatcher.handle(make_alert())
        await h.dispatcher.handle(second)
        async with ClientSession() as s:
            async with s.post(f"{url}/ack/{KEY.replace('|', '%7C')}", json={"by": "alice"}) as r:
                http_ack = (r.status, await r.json())
            async with s.post(f"{url}/ack/unknown-key") as r:
                unknown = r.status
            async with s.get(f"{url}/healthz") as r:
                health = r.status
            async with s.get(f"{url}/metrics") as r:
                metrics_text = await r.text()
        cli_rc = await asyncio.to_thread(main_ack, [second["dedup_key"], "--router", url, "--by", "bob"])
        cli_down = await asyncio.to_thread(main_ack, ["x", "--router", "http://127.0.0.1:9", "--timeout", "2"])
        h.clock.now += 24 * 3600
        out = await h.escalator.tick()
        async with ClientSession() as s:
            async with s.get(f"{url}/alerts/{KEY.replace('|', '%7C')}") as r:
                status = await r.json()
        await runner.cleanup()
        await h.close(), await rec.stop()
        return rec, http_ack, unknown, health, metrics_text, cli_rc, cli_down, out, status
    rec, http_ack, unknown, health, metrics_text, cli_rc, cli_down, out, status = run(go())
    assert http_ack == (200, {"dedup_key": KEY, "acknowledged": True, "escalations_stopped": 1})
    assert unknown == 404 and health == 200 and cli_rc == 0 and cli_down == 2
    assert 'ddetect_alert_delivery_attempts_total{outcome="ok",receiver="pagerduty"} 2.0' in metrics_text
    assert out == [] and rec.at(PAGER) == []
    assert status["escalations"][0]["state"] == "acked" and status["acks"][0]["by"] == "alice"


PAUSE = """
stop_the_fire:
  dry_run: {dry}
  webhook:
    url: "{{base}}/pause"
    secret_env: PAUSE_SECRET
"""


def test_stop_the_fire_dry_run_logs_and_does_not_call(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="alerting.pause")

    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec, extra=PAUSE.format(dry="true"))
        await h.dispatcher.handle(make_alert())
        await h.dispatcher.handle(make_alert(severity="warning", alert_id="w"))
        await h.close(), await rec.stop()
        return rec
    rec = run(go())
    assert rec.at("/pause") == []
    assert "stop_the_fire DRY RUN (webhook): would pause" in caplog.text and '"campaign": "spring"' in caplog.text


def test_stop_the_fire_live_calls_signed_hook_once(tmp_path, caplog):
    from alerting.receivers.webhook import verify
    caplog.set_level(logging.WARNING, logger="alerting.pause")

    async def go():
        rec = await Recorder().start()
        h = await build(tmp_path, rec, extra=PAUSE.format(dry="false"))
        await h.dispatcher.handle(make_alert())
        await h.dispatcher.handle(make_alert())  # redelivery: no second pause
        await h.close(), await rec.stop()
        return rec, h
    rec, h = run(go())
    calls = rec.at("/pause")
    assert len(calls) == 1
    body = calls[0].json()
    assert body["action"] == "pause" and body["scope"]["campaign"] == "spring" and body["dry_run"] is False
    assert verify("pause-secret", calls[0].headers["X-Ddetect-Timestamp"], calls[0].body,
                  calls[0].headers["X-Ddetect-Signature"], now=h.clock.now)
    assert "stop_the_fire webhook: paused" in caplog.text
