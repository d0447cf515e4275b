"""Ingest throughput and latency vs. a bare aiohttp handler, same run, real broker.

Scenarios: SendGrid-style batches of 1,000 events, and single-event posts. For each, the
same client load hits, one after the other:

- ``baseline``: a bare aiohttp handler that only reads the body (the issue's reference);
- ``parse-json``: reads the body and ``json.loads`` it (the floor of any stdlib-JSON ingest);
- ``parse-fast``: reads it and decodes it with ``ingest.fastjson.loads`` (orjson if
  installed: the decoder ingest actually uses);
- ``ingest``: the real app (decode + normalise + hash + dedup + one produce per request,
  acks=all, to a real broker; 2xx after the ack).

Servers run in a child process (the client in this one) so each side has a core.
Goal: ingest >= 50% of the baseline's events/s on batches. The parse-only lines show
what bounds that: a handler that does nothing but decode the JSON already costs most of
the budget the baseline leaves.

    python bench/bench_ingest.py [--batches 40] [--singles 2000] [--concurrency 8]

Broker: $KAFKA_BOOTSTRAP_SERVERS, else a local one via tests.kafka_fixture.KafkaBroker.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def sendgrid_body(n: int, prefix: str) -> bytes:
    kinds = ["delivered", "processed", "open", "bounce", "deferred", "click"]
    domains = ["gmail.com", "yahoo.com", "outlook.com", "example.org"]
    return json.dumps([{
        "email": f"user{i}@{domains[i % 4]}", "timestamp": 1700000000 + i, "event": kinds[i % 6],
        "sg_event_id": f"{prefix}-{i}", "sg_message_id": f"msg{i}.filter0001", "category": ["spring-sale"],
        "smtp-id": f"<{i}@ismtpd>", "response": "250 OK", "reason": "550 5.1.1 user unknown", "status": "5.1.1",
    } for i in range(n)]).encode()


def _serve(kind: str, port: int, bootstrap: str, topic: str, ready, profile: str | None = None) -> None:
    from aiohttp import web

    if profile and kind == "ingest":  # cProfile the server; stats written on SIGTERM
        import cProfile
        import signal
        profiler = cProfile.Profile()

        def dump(*_):
            profiler.disable()
            profiler.dump_stats(profile)
            os._exit(0)
        signal.signal(signal.SIGTERM, dump)
        profiler.enable()

    async def main():
        if kind in ("baseline", "parse-json", "parse-fast"):
            import json
            from ingest import fastjson
            decode = {"baseline": None, "parse-json": json.loads, "parse-fast": fastjson.loads}[kind]

            async def handler(request):
                body = await request.read()
                if decode is not None:
                    decode(body)
                return web.Response(text="ok")
            app = web.Application(client_max_size=16 * 1024 * 1024)
            app.router.add_post("/webhooks/{provider}", handler)
            producer = None
        else:
            from prometheus_client import CollectorRegistry
            from ddetect.metrics import Metrics
            from ingest.config import load_config
            from ingest.producer import KafkaEventProducer
            from ingest.server import build_app
            import logging
            logging.disable(logging.WARNING)
            cfg = load_config(env={"DDETECT_RECIPIENT_HASH_KEY": "bench-key", "DDETECT_SENDGRID_UNAUTHENTICATED": "1"})
            cfg.events_topic, cfg.max_body_bytes = topic, 16 * 1024 * 1024
            metrics = Metrics(CollectorRegistry())
            producer = KafkaEventProducer(bootstrap, topic, topic + "-dlq", timeout=30, metrics=metrics)
            await producer.start()
            app = build_app(cfg, producer, metrics=metrics)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


def start_server(kind: str, bootstrap: str, topic: str, profile: str | None = None) -> tuple[mp.Process, int]:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ready = mp.Event()
    proc = mp.Process(target=_serve, args=(kind, port, bootstrap, topic, ready, profile), daemon=True)
    proc.start()
    if not ready.wait(60):
        proc.terminate()
        raise RuntimeError(f"{kind} server did not start")
    return proc, port


async def load(port: int, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    queue = list(reversed(bodies))
    url = f"http://127.0.0.1:{port}/webhooks/sendgrid"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
        async def worker():
            while queue:
                body = queue.pop()
                t0 = time.perf_counter()
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:200]}")
                latencies.append(time.perf_counter() - t0)
        # warm-up request (connection, JIT-free but caches/metadata)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


KINDS = ("baseline", "parse-json", "parse-fast", "ingest")


def stage_costs(repeats: int = 20) -> dict[str, float]:
    """In-process CPU cost per event of each stage of a 1,000-event batch (us/event),
    to say what bounds the HTTP numbers."""
    import json
    from ingest import fastjson
    from ingest.config import load_config
    from ingest.producer import encode_event_messages
    from ingest.providers import sendgrid
    cfg = load_config(env={"DDETECT_RECIPIENT_HASH_KEY": "bench-key"})
    bodies = [sendgrid_body(1000, f"stage{i}") for i in range(repeats)]

    def per_event(fn) -> float:  # best of 5: the machine is shared, the minimum is the cost
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for b in bodies:
                fn(b)
            best = min(best, time.perf_counter() - t0)
        return best / (1000 * len(bodies)) * 1e6
    events = sendgrid.normalize(bodies[0], "application/json", cfg).events
    return {
        "json.loads": per_event(json.loads),
        "fastjson.loads": per_event(fastjson.loads),
        "normalise (incl. decode)": per_event(lambda b: sendgrid.normalize(b, "application/json", cfg)),
        "encode message": per_event(lambda b: encode_event_messages(events)),
    }


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[q - 1] * 1000 if len(values) > 1 else values[0] * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=40, help="1,000-event batches per server")
    ap.add_argument("--singles", type=int, default=2000, help="single-event posts per server")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--profile", metavar="FILE", help="cProfile the ingest server into FILE (pstats format)")
    args = ap.parse_args()

    broker = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if not bootstrap:
        from tests.kafka_fixture import KafkaBroker
        broker = KafkaBroker()
        bootstrap = broker.start()
    from tests.kafka_fixture import create_topic
    topic = f"bench-events-{uuid.uuid4().hex[:6]}"
    create_topic(bootstrap, topic, partitions=3)
    results = {}
    try:
        for kind in KINDS:
            proc, port = start_server(kind, bootstrap, topic, args.profile)
            try:
                run_id = uuid.uuid4().hex[:6]
                asyncio.run(load(port, [sendgrid_body(1000, f"warm{run_id}")], 1))
                batches = [sendgrid_body(1000, f"{run_id}b{i}") for i in range(args.batches)]
                singles = [sendgrid_body(1, f"{run_id}s{i}") for i in range(args.singles)]
                wall_b, lat_b = asyncio.run(load(port, batches, args.concurrency))
                wall_s, lat_s = asyncio.run(load(port, singles, args.concurrency))
                results[kind] = {
                    "batch": (1000 * len(batches) / wall_b, pct(lat_b, 50), pct(lat_b, 99)),
                    "single": (len(singles) / wall_s, pct(lat_s, 50), pct(lat_s, 99)),
                }
            finally:
                proc.terminate()
                proc.join(10)
    finally:
        if broker is not None:
            broker.cleanup()

    from ingest.fastjson import HAVE_ORJSON
    print(f"\ningest benchmark (concurrency {args.concurrency}, {args.batches} x 1,000-event batches, "
          f"{args.singles} single posts, broker {bootstrap}, acks=all, one message per request; "
          f"fast JSON: {'orjson' if HAVE_ORJSON else 'stdlib json (orjson not installed)'}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    print("in-process CPU per event, 1,000-event batch: "
          + ", ".join(f"{name} {us:.2f} us" for name, us in stage_costs().items()))
    print(f"{'scenario':<8} {'server':<11} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'vs baseline':>12}")
    for scenario in ("batch", "single"):
        base = results["baseline"][scenario][0]
        for kind in KINDS:
            eps, p50, p99 = results[kind][scenario]
            print(f"{scenario:<8} {kind:<11} {eps:>10,.0f} {p50:>8.1f} {p99:>8.1f} {eps / base:>12.1%}")
        ingest_eps = results["ingest"][scenario][0]
        print(f"{scenario:<8} ingest / parse-json {ingest_eps / results['parse-json'][scenario][0]:.1%}, "
              f"ingest / parse-fast {ingest_eps / results['parse-fast'][scenario][0]:.1%}"
              + ("   (issue goal: ingest >= 50% of baseline)" if scenario == "batch" else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
