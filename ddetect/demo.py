"""``make run`` / ``python -m ddetect.demo``: the whole pipeline, live, on one machine.

It starts, each as its own process: an embedded Kafka-compatible broker (Tansu, see
:mod:`ddetect.embedded_broker`; skipped when ``KAFKA_BOOTSTRAP_SERVERS`` names a cluster),
``ddetect ingest``, one detection worker (memory store) and the alert router. Then the
simulator plays a labelled scenario in compressed time and POSTs it to the ingest server
as real ESP webhooks (SendGrid signed with ECDSA, Mailgun with HMAC, Postmark and SparkPost
with Basic auth; see :mod:`sim.webhooks`). Alerts travel worker -> alert topic -> router ->
a signed webhook that this process receives and prints, one coloured line each.

Ctrl-C stops everything: children are stopped in dependency order (ingest, worker,
router, broker), each with SIGTERM and, after a grace period, SIGKILL; they also die with
this process if it is killed (PR_SET_PDEATHSIG).

``--exit-after-incidents N`` turns the demo into a smoke test: exit 0 as soon as N distinct
alerts (rule + scope) have fired and then resolved, exit 1 at ``--timeout``.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime as _dt
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data"
DEMO_RULES = DATA / "demo-rules.yaml"
DEMO_ROUTING = DATA / "demo-routing.yaml"
#: 14:00 UTC: afternoon volumes (the simulator's diurnal curve peaks at 19:00 UTC).
DEMO_START = "2024-06-04T14:00:00Z"
EVENTS_PARTITIONS = 2
INTERNAL_PARTITIONS = 4


# ----------------------------------------------------------------------------- output

class Style:
    """ANSI colours, or nothing (``--no-color``, ``NO_COLOR``, or not a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __call__(self, text: str, *codes: str) -> str:
        if not self.enabled or not codes:
            return text
        return "\033[" + ";".join(codes) + "m" + text + "\033[0m"


RED, GREEN, YELLOW, BLUE, MAGENTA, CYAN, BOLD, DIM = "31", "32", "33", "34", "35", "36", "1", "2"


class Console:
    def __init__(self, style: Style, out=None):
        self.style = style
        self.out = out or sys.stdout
        self.t0 = time.monotonic()

    def line(self, text: str) -> None:
        stamp = self.style(f"[{time.monotonic() - self.t0:6.1f}s]", DIM)
        print(f"{stamp} {text}", file=self.out, flush=True)

    def step(self, text: str) -> None:
        self.line(self.style("==>", BLUE, BOLD) + " " + text)


def sim_clock(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc).strftime("%H:%M")


# ----------------------------------------------------------------------------- alerts

@dataclass
class Incident:
    """One alert identity (rule + scope) and what we have seen of it."""

    dedup_key: str
    fired: int = 0
    resolved: int = 0
    label: str | None = None


@dataclass
class AlertBoard:
    """Prints alerts as they arrive and tracks fired/resolved incidents against the
    scenario's ground truth (an alert matches a label when the label's scope is part of
    the alert's scope and the alert came after the incident started)."""

    console: Console
    labels: list[dict]
    window: float = 120.0
    incidents: dict[str, Incident] = field(default_factory=dict)
    seen: set = field(default_factory=set)
    first_alert_at: float | None = None
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def match(self, alert: dict) -> str | None:
        scope = alert.get("scope") or {}
        start = (alert.get("window") or {}).get("start", 0.0)
        for label in self.labels:
            if all(scope.get(k) == v for k, v in label["scope"].items()) and start >= label["start"] - self.window:
                return label["incident"]
        return None

    def add(self, alert: dict) -> None:
        status = alert.get("status")
        key = (alert.get("alert_id"), status)
        if key in self.seen:   # at-least-once delivery: a redelivery is not news
            return
        self.seen.add(key)
        if self.first_alert_at is None:
            self.first_alert_at = time.monotonic()
        inc = self.incidents.setdefault(alert["dedup_key"], Incident(alert["dedup_key"]))
        inc.label = inc.label or self.match(alert)
        if status == "firing":
            inc.fired += 1
        elif status == "resolved" and inc.fired:
            inc.resolved += 1
        self.console.line(self.format(alert, inc.label))
        self.changed.set()

    def format(self, alert: dict, label: str | None) -> str:
        st = self.console.style
        firing = alert.get("status") == "firing"
        severity = alert.get("severity", "?")
        if firing:
            tag = st(" FIRING ", BOLD, "41" if severity == "critical" else "43", "30")
        else:
            tag = st("RESOLVED", BOLD, GREEN)
        summary = alert.get("summary", "")
        for prefix in ("RESOLVED ", f"[{severity}] "):
            summary = summary.removeprefix(prefix)
        rule = alert.get("rule", "")
        summary = summary.removeprefix(f"{rule}: ")
        when = sim_clock(alert.get("detected_at") or 0)
        truth = st(f"<- {label}", CYAN) if label else st("<- no labelled incident", MAGENTA)
        sev = st(f"{severity:<8}", RED if severity == "critical" else YELLOW)
        return f"{tag} {sev} {st(rule, BOLD)}: {summary} {st(f'(sim {when})', DIM)} {truth}"

    @property
    def resolved_incidents(self) -> int:
        return sum(1 for inc in self.incidents.values() if inc.fired and inc.resolved)

    def summary_lines(self) -> list[str]:
        st = self.console.style
        lines = []
        for label in self.labels:
            hits = [i for i in self.incidents.values() if i.label == label["incident"]]
            if not hits:
                state = st("not detected", RED)
            elif all(i.resolved for i in hits):
                state = st(f"detected and resolved ({len(hits)} alert{'s' * (len(hits) > 1)})", GREEN)
            else:
                open_ = sum(1 for i in hits if not i.resolved)
                state = st(f"detected, {open_} of {len(hits)} alert(s) still firing", YELLOW)
            lines.append(f"  {label['incident']:<18} {' '.join(f'{k}={v}' for k, v in label['scope'].items())}: "
                         f"{state}")
        extra = [i for i in self.incidents.values() if i.label is None]
        if extra:
            lines.append(f"  {len(extra)} alert(s) matched no labelled incident: "
                         + ", ".join(i.dedup_key for i in extra[:5]) + (" ..." if len(extra) > 5 else ""))
        return lines


async def receiver_app(board: AlertBoard, secret: str):
    """The router's webhook target: verify the signature, then print."""
    from aiohttp import web

    from alerting.receivers.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(secret, request.headers.get(TIMESTAMP_HEADER, ""), body,
                      request.headers.get(SIGNATURE_HEADER, "")):
            return web.json_response({"error": "bad signature"}, status=403)
        try:
            alert = json.loads(body)["alert"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"error": "not an alert"}, status=400)
        board.add(alert)
        return web.json_response({"status": "ok"})

    app = web.Application()
    app.router.add_post("/alerts", receive)
    return app


# ----------------------------------------------------------------------------- processes

@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log: Path
    grace: float


class Services:
    """Child processes, started in order and stopped in reverse dependency order."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.children: list[Child] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str], grace: float = 10.0) -> Child:
        from .embedded_broker import die_with_parent

        log = self.workdir / f"{name}.log"
        with open(log, "ab") as fh:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                    env=env, cwd=str(Path(__file__).resolve().parent.parent),
                                    start_new_session=True, preexec_fn=die_with_parent)
        child = Child(name, proc, log, grace)
        self.children.append(child)
        return child

    def dead(self) -> Child | None:
        for child in self.children:
            if child.process.poll() is not None:
                return child
        return None

    def stop(self, order: list[str]) -> dict[str, int | None]:
        """SIGTERM each (in ``order``, then any others), wait its grace, SIGKILL if needed."""
        codes: dict[str, int | None] = {}
        rank = {name: i for i, name in enumerate(order)}
        for child in sorted(self.children, key=lambda c: rank.get(c.name, len(rank))):
            proc = child.process
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)   # its own session: the child and its helpers
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(child.grace)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    proc.wait()
            codes[child.name] = proc.returncode
        return codes


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def prefer_port(port: int) -> int:
    """``port`` when it is free (memorable URLs), else any free port."""
    import socket

    from .embedded_broker import free_port

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return port
        except OSError:
            return free_port()


async def wait_http(url: str, timeout: float, alive=lambda: True) -> float:
    """Poll ``url`` until it answers 200; returns the seconds it took."""
    import aiohttp

    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() - started < timeout:
            if not alive():
                raise RuntimeError(f"process died before {url} was ready")
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return time.monotonic() - started
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout:g} s")


# ----------------------------------------------------------------------------- traffic

@dataclass
class TrafficStats:
    events: int = 0
    requests: int = 0
    by_esp: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)     # (esp, status) -> count
    sim_time: float = 0.0
    done: bool = False


class WebhookSender:
    """Plays the simulated stream into the ingest server in compressed real time.

    A thread runs :func:`sim.pace.paced` (it sleeps between batches) and hands batches to
    the event loop; each batch is rendered per ESP and posted with bounded concurrency.
    A retry status is retried (as the ESP would) a few times; other failures are counted
    and reported, never silently dropped."""

    def __init__(self, table, renderer, base_url: str, speedup: float, console: Console,
                 concurrency: int = 24):
        self.table = table
        self.renderer = renderer
        self.base_url = base_url
        self.speedup = speedup
        self.console = console
        self.stats = TrafficStats()
        self.stop_flag = threading.Event()
        self.sem = asyncio.Semaphore(concurrency)
        self.tasks: set[asyncio.Task] = set()
        self.reported: set = set()

    def _produce(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
        from sim.pace import paced
        from sim.webhooks import iter_timed_events

        try:
            for batch in paced(iter_timed_events(self.table), self.speedup, max_batch=2000):
                if self.stop_flag.is_set():
                    return
                asyncio.run_coroutine_threadsafe(queue.put(batch), loop).result()
        finally:
            asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    async def run(self) -> None:
        import aiohttp

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue(maxsize=4)
        thread = threading.Thread(target=self._produce, args=(loop, queue), name="sim-pace", daemon=True)
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            thread.start()
            try:
                while True:
                    batch = await queue.get()
                    if batch is None:
                        break
                    self.stats.sim_time = max(self.stats.sim_time, batch[-1].event["timestamp"])
                    for hook in self.renderer.render(batch):
                        await self.sem.acquire()
                        task = asyncio.create_task(self._post(session, hook))
                        self.tasks.add(task)
                        task.add_done_callback(self._done)
                if self.tasks:
                    await asyncio.gather(*list(self.tasks), return_exceptions=True)
                self.stats.done = True
            finally:
                self.stop_flag.set()
                for task in list(self.tasks):
                    task.cancel()
                # unblock the producer thread if it waits on a full queue
                while not queue.empty():
                    queue.get_nowait()

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.sem.release()

    async def _post(self, session, hook) -> None:
        import aiohttp

        url = f"{self.base_url}/webhooks/{hook.endpoint}"
        for attempt in range(4):
            try:
                async with session.post(url, data=hook.body, headers=hook.headers) as resp:
                    status = resp.status
                    if status == 200:
                        self.stats.events += hook.events
                        self.stats.requests += 1
                        self.stats.by_esp[hook.esp] += hook.events
                        return
                    text = await resp.text()
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status, text = 0, repr(exc)
            if status not in (0, 429, 500, 502, 503, 504) or self.stop_flag.is_set():
                break
            await asyncio.sleep(0.5 * 2 ** attempt)
        self.stats.failures[(hook.esp, status)] += hook.events
        if (hook.esp, status) not in self.reported:
            self.reported.add((hook.esp, status))
            self.console.line(self.console.style(f"webhook to /webhooks/{hook.endpoint} ({hook.esp}) failed: "
                                                 f"HTTP {status} {text[:200]}", RED))


# ----------------------------------------------------------------------------- components

def run_component(name: str) -> int:
    """Entry of a child process: ``ingest`` or ``router``, with the Tansu compatibility
    patch when the demo runs the embedded broker (their producers are idempotent)."""
    if os.environ.get("DDETECT_DEMO_EMBEDDED") == "1":
        from .embedded_broker import patch_aiokafka_for_tansu

        patch_aiokafka_for_tansu()
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if name == "ingest":
        from ingest.config import load_config
        from ingest.server import run_ingest

        run_ingest(load_config(None))
        return 0
    if name == "router":
        from alerting.service import RouterSettings, run_router

        return run_router(RouterSettings.from_env())
    raise SystemExit(f"unknown component {name!r}")


# ----------------------------------------------------------------------------- the demo

@dataclass
class Topics:
    events: str
    dlq: str
    alerts: str
    alerts_dlq: str
    app_id: str
    router_group: str


def topics_for(run_id: str | None) -> Topics:
    """Default names on the embedded (fresh, memory-only) broker; per-run names on an
    existing cluster, so earlier runs' data cannot leak into this one."""
    if run_id is None:
        return Topics("deliverability-events", "deliverability-events-dlq", "deliverability-alerts",
                      "deliverability-alerts-dlq", "ddetect", "ddetect-router")
    p = f"ddetect-demo-{run_id}"
    return Topics(f"{p}-events", f"{p}-events-dlq", f"{p}-alerts", f"{p}-alerts-dlq", p, f"{p}-router")


class Demo:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        color = not args.no_color and not os.environ.get("NO_COLOR") and sys.stdout.isatty()
        self.console = Console(Style(color or args.color))
        self.st = self.console.style
        self.workdir = Path(tempfile.mkdtemp(prefix="ddetect-demo-"))
        self.services = Services(self.workdir)
        self.broker = None
        self.stop = asyncio.Event()
        self.exit_code = 0
        self.keep_logs = args.keep_logs

    # -- setup -----------------------------------------------------------------------
    def _python_env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DDETECT_")}
        env.update(extra)
        env["PYTHONUNBUFFERED"] = "1"
        return env

    async def run(self) -> int:
        from aiohttp import web

        from sim import simulate
        from sim.cli import parse_duration, parse_start
        from sim.webhooks import DemoCredentials, WebhookRenderer

        from .embedded_broker import EmbeddedBroker, ensure_topics, free_port, wait_for_broker

        args, c, st = self.args, self.console, self.st
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._interrupt)
        c.step(f"ddetect live demo: scenario {st(args.scenario, BOLD)}, seed {args.seed}, "
               f"{args.duration} of simulated traffic at {args.speedup:g}x (logs: {self.workdir})")

        started = time.monotonic()
        start_ts = parse_start(args.start)
        table, labels = simulate(args.scenario, seed=args.seed, start=start_ts,
                                 duration=parse_duration(args.duration), scale=args.scale)
        c.line(f"simulated {len(table):,} events, {len(labels)} labelled incident(s) "
               f"({', '.join(lb['incident'] for lb in labels) or 'none'}) in {time.monotonic() - started:.1f} s")

        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if external:
            bootstrap, run_id = external, secrets.token_hex(3)
            c.step(f"using the Kafka cluster at {bootstrap} (KAFKA_BOOTSTRAP_SERVERS)")
        else:
            self.broker = EmbeddedBroker(log_path=self.workdir / "broker.log")
            t = time.monotonic()
            bootstrap, run_id = self.broker.start(), None
            c.step(f"embedded broker (Tansu, memory-only) on {bootstrap}, listening in {time.monotonic() - t:.2f} s")
        await wait_for_broker(bootstrap, timeout=20)
        topics = topics_for(run_id)
        await ensure_topics(bootstrap, {topics.events: EVENTS_PARTITIONS, topics.dlq: 1, topics.alerts: 1,
                                        topics.alerts_dlq: 1})

        creds = DemoCredentials.generate()
        secret = secrets.token_hex(16)
        board = AlertBoard(c, labels)
        receiver = web.AppRunner(await receiver_app(board, secret), access_log=None)
        await receiver.setup()
        receiver_port = free_port()
        await web.TCPSite(receiver, "127.0.0.1", receiver_port).start()

        ingest_port, worker_port, router_port = prefer_port(8080), prefer_port(6066), prefer_port(9095)
        common = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "DDETECT_DEMO_EMBEDDED": "0" if external else "1"}
        py = sys.executable
        try:
            self.services.start("ingest", [py, "-m", "ddetect.demo", "--component", "ingest"], self._python_env({
                **common, **creds.ingest_env(), "DDETECT_INGEST_HOST": "127.0.0.1",
                "DDETECT_INGEST_PORT": str(ingest_port), "DDETECT_INGEST_EVENTS_TOPIC": topics.events,
                "DDETECT_INGEST_DLQ_TOPIC": topics.dlq}), grace=10)
            self.services.start("worker", [py, "-m", "streams", "worker", "-l", "info"], self._python_env({
                **common, "DDETECT_RULES": str(args.rules), "DDETECT_STORE": "memory://",
                "DDETECT_WEB_PORT": str(worker_port), "DDETECT_PARTITIONS": str(INTERNAL_PARTITIONS),
                "DDETECT_DATA_DIR": str(self.workdir / "worker-data"), "DDETECT_EVENTS_TOPIC": topics.events,
                "DDETECT_DLQ_TOPIC": topics.dlq, "DDETECT_ALERTS_TOPIC": topics.alerts,
                "DDETECT_APP_ID": topics.app_id}), grace=15)
            self.services.start("router", [py, "-m", "ddetect.demo", "--component", "router"], self._python_env({
                **common, "DDETECT_ROUTER_TOPIC": topics.alerts, "DDETECT_ROUTER_DLQ_TOPIC": topics.alerts_dlq,
                "DDETECT_ROUTER_GROUP_ID": topics.router_group, "DDETECT_ROUTER_ROUTING_PATH": str(DEMO_ROUTING),
                "DDETECT_ROUTER_DATA_DIR": str(self.workdir / "router-data"),
                "DDETECT_ROUTER_HTTP_HOST": "127.0.0.1", "DDETECT_ROUTER_HTTP_PORT": str(router_port),
                "DDETECT_DEMO_RECEIVER_URL": f"http://127.0.0.1:{receiver_port}/alerts",
                "DDETECT_DEMO_RECEIVER_SECRET": secret}), grace=10)
            c.line("started ingest, worker and router processes; waiting for them to be ready")
            alive = lambda: self.services.dead() is None  # noqa: E731
            waits = await asyncio.gather(
                wait_http(f"http://127.0.0.1:{ingest_port}/readyz", 60, alive),
                wait_http(f"http://127.0.0.1:{worker_port}/readyz", 90, alive),
                wait_http(f"http://127.0.0.1:{router_port}/healthz", 60, alive))
            c.step(f"pipeline ready in {time.monotonic() - c.t0:.1f} s (ingest {waits[0]:.1f} s, "
                   f"worker incl. group join {waits[1]:.1f} s, router {waits[2]:.1f} s)")
            c.line(f"metrics: ingest {st(f'http://127.0.0.1:{ingest_port}/metrics', CYAN)}  "
                   f"worker {st(f'http://127.0.0.1:{worker_port}/metrics', CYAN)}  "
                   f"router {st(f'http://127.0.0.1:{router_port}/metrics', CYAN)}")
            c.line(f"webhooks: POST http://127.0.0.1:{ingest_port}/webhooks/{{sendgrid,mailgun,postmark,sparkpost,"
                   f"generic}} (SendGrid ECDSA-signed, Mailgun HMAC-signed, others Basic auth)")
        except (RuntimeError, TimeoutError) as exc:
            self._report_failure(str(exc))
            await self._shutdown(receiver)
            return 1

        renderer = WebhookRenderer(creds)
        sender = WebhookSender(table, renderer, f"http://127.0.0.1:{ingest_port}", args.speedup, c)
        c.step(f"simulator: posting webhooks at {args.speedup:g}x (1 simulated minute every "
               f"{60 / args.speedup:.2f} s); alerts appear below as they fire and resolve")
        traffic = asyncio.create_task(sender.run())
        deadline = time.monotonic() + args.timeout if args.timeout else None
        try:
            self.exit_code = await self._watch(board, sender, traffic, deadline)
        finally:
            sender.stop_flag.set()
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)
            self._print_summary(board, sender, renderer)
            await self._shutdown(receiver)
        return self.exit_code

    # -- running -----------------------------------------------------------------------
    async def _watch(self, board: AlertBoard, sender: WebhookSender, traffic: asyncio.Task,
                     deadline: float | None) -> int:
        c, st, args = self.console, self.st, self.args
        last_status = time.monotonic()
        last_events = 0
        finished_at = None
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(board.changed.wait(), timeout=0.5)
            except asyncio.TimeoutError:
                pass
            board.changed.clear()
            if args.exit_after_incidents and board.resolved_incidents >= args.exit_after_incidents:
                c.step(st(f"{board.resolved_incidents} incidents fired and resolved: done", GREEN, BOLD))
                return 0
            dead = self.services.dead()
            if dead is not None:
                self._report_failure(f"{dead.name} exited unexpectedly (status {dead.process.returncode})", dead)
                return 1
            if traffic.done() and traffic.exception() is not None:
                self._report_failure(f"simulator failed: {traffic.exception()!r}")
                return 1
            now = time.monotonic()
            if now - last_status >= args.status_every:
                s = sender.stats
                rate = (s.events - last_events) / (now - last_status)
                last_status, last_events = now, s.events
                firing = sum(1 for i in board.incidents.values() if i.fired > i.resolved)
                c.line(st(f"sim {sim_clock(s.sim_time) if s.sim_time else '--:--'} UTC | {s.events:,} events "
                          f"in {s.requests:,} webhooks ({rate:,.0f}/s) | alerts: {firing} firing, "
                          f"{board.resolved_incidents} resolved", DIM))
            if traffic.done() and finished_at is None:
                finished_at = now
                c.step("simulation finished; the last windows close as the final events are processed")
                if not args.exit_after_incidents:
                    c.line("services keep running so you can look at the metrics; press Ctrl-C to stop")
            if finished_at is not None and args.exit_after_incidents and now - finished_at > args.drain:
                c.line(st(f"simulation over and only {board.resolved_incidents} of {args.exit_after_incidents} "
                          "incidents resolved", RED))
                return 1
            if deadline is not None and now > deadline:
                c.line(st(f"timeout after {args.timeout:g} s: {board.resolved_incidents} incidents resolved", RED))
                return 1 if args.exit_after_incidents else 0
        return 130 if self.exit_code == 130 else 0

    def _interrupt(self) -> None:
        if self.stop.is_set():
            return
        self.console.line("interrupted: stopping")
        self.exit_code = 130
        self.stop.set()

    def _report_failure(self, what: str, child: Child | None = None) -> None:
        self.keep_logs = True
        self.console.line(self.st(f"error: {what}", RED, BOLD))
        for ch in [child] if child else self.services.children:
            if ch is not None and ch.process.poll() is not None:
                self.console.line(f"last lines of {ch.log}:\n{tail(ch.log)}")

    def _print_summary(self, board: AlertBoard, sender: WebhookSender, renderer) -> None:
        c, st = self.console, self.st
        s = sender.stats
        first = f"{board.first_alert_at - c.t0:.1f} s after start" if board.first_alert_at else "none"
        c.step(f"summary: {s.events:,} events in {s.requests:,} webhooks "
               f"({', '.join(f'{esp} {n:,}' for esp, n in sorted(s.by_esp.items()))}); first alert: {first}")
        skipped = Counter()
        for (esp, kind), n in renderer.not_carried.items():
            skipped[esp] += n
        if skipped:
            c.line("not posted (no such webhook at that ESP): "
                   + ", ".join(f"{esp} {n:,}" for esp, n in sorted(skipped.items())))
        if s.failures:
            c.line(st("failed webhooks: " + ", ".join(f"{esp} HTTP {code}: {n:,} events"
                                                      for (esp, code), n in sorted(s.failures.items())), RED))
        c.line(f"alerts: {len(board.incidents)} distinct, {board.resolved_incidents} fired and resolved")
        for line in board.summary_lines():
            c.line(line)

    async def _shutdown(self, receiver) -> None:
        c = self.console
        t = time.monotonic()
        codes = await asyncio.to_thread(self.services.stop, ["ingest", "worker", "router"])
        if self.broker is not None:
            self.broker.stop()
        await receiver.cleanup()
        c.line(f"stopped {', '.join(codes)}{' and the broker' if self.broker else ''} "
               f"in {time.monotonic() - t:.1f} s")
        if self.keep_logs:
            c.line(f"logs kept in {self.workdir}")
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ddetect.demo", description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="demo", help="simulator scenario (default: demo, five incidents)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    p.add_argument("--duration", default="3h", help="simulated time to play (default 3h)")
    p.add_argument("--speedup", type=float, default=200.0,
                   help="simulated seconds per wall-clock second (default 200: 3 h in 54 s)")
    p.add_argument("--scale", type=float, default=0.25, help="traffic volume factor (default 0.25)")
    p.add_argument("--start", default=DEMO_START, help=f"simulated start time (default {DEMO_START})")
    p.add_argument("--rules", default=str(DEMO_RULES), help="rule file for the worker (default: the demo pack)")
    p.add_argument("--no-color", action="store_true", help="plain output (also NO_COLOR=1)")
    p.add_argument("--color", action="store_true", help="colour even when stdout is not a terminal")
    p.add_argument("--exit-after-incidents", type=int, metavar="N", default=0,
                   help="exit 0 once N distinct alerts have fired and resolved (exit 1 at --timeout)")
    p.add_argument("--timeout", type=float, default=0.0, help="seconds before giving up (0 = no limit)")
    p.add_argument("--drain", type=float, default=30.0,
                   help="with --exit-after-incidents: seconds to wait after the simulation ends")
    p.add_argument("--status-every", type=float, default=5.0, help="seconds between status lines")
    p.add_argument("--keep-logs", action="store_true", help="keep the log directory after a clean exit")
    p.add_argument("--component", choices=("ingest", "router"), help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.component:
        return run_component(args.component)
    if args.speedup <= 0:
        raise SystemExit("--speedup must be positive")
    return asyncio.run(Demo(args).run())


if __name__ == "__main__":
    sys.exit(main())
