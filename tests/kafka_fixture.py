"""Real Apache Kafka broker for the test suite (pytest plugin + reusable helpers).

Register with ``pytest_plugins = ["tests.kafka_fixture"]``. Tests that need Kafka take the session-scoped
``kafka_bootstrap`` fixture ("127.0.0.1:PORT"). If ``KAFKA_BOOTSTRAP_SERVERS`` is set, that cluster is used
as is; otherwise one single-node KRaft broker is started from deploy/kafka (jars fetched with mvn on first
use), on free ports, with its data and logs in pytest's temp dir, and stopped at the end of the session.

``KafkaBroker`` is the same machinery as a plain class, for tests and benchmarks that need to stop and
restart a broker on the same data dir (the "broker down -> retry -> broker back -> nothing lost" cases).

Why the process handling is so defensive: a JVM left behind keeps 512 MB and a port and slows every other
job on a 2-core machine. The broker runs in its own session (Ctrl-C goes to pytest, which then stops it
in order), is stopped by fixture teardown, by an atexit hook, and, if pytest itself dies, by the kernel
(PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import atexit
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO_DIR = Path(__file__).resolve().parents[1]
KAFKA_DIR = REPO_DIR / "deploy" / "kafka"
KAFKA_SH = KAFKA_DIR / "kafka.sh"
BOOTSTRAP_ENV = "KAFKA_BOOTSTRAP_SERVERS"

_PR_SET_PDEATHSIG = 1


class KafkaSetupError(RuntimeError):
    """The broker could not be fetched or started; the message says why and where the logs are."""


class _PortInUse(KafkaSetupError):
    """The broker could not bind its port or controller port."""


def free_port() -> int:
    """A port that was free a moment ago (the controller port goes into the config, so 0 won't do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_jars(timeout: float = 900) -> None:
    """Download the broker classpath into deploy/kafka/lib once (a no-op when already there)."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise KafkaSetupError(
            "java not found: the Kafka broker needs Java 17+ (apt-get install openjdk-17-jre-headless), "
            f"or point the tests at an existing cluster with {BOOTSTRAP_ENV}=host:port"
        )
    stamp = KAFKA_DIR / "lib" / ".fetched"
    if not stamp.exists() and shutil.which("mvn") is None:
        raise KafkaSetupError(
            "mvn not found: it is needed once to download the Kafka broker jars from Maven Central into "
            f"{KAFKA_DIR / 'lib'} (apt-get install maven), or set {BOOTSTRAP_ENV}=host:port"
        )
    proc = subprocess.run(
        ["bash", str(KAFKA_SH), "fetch"], capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode != 0:
        raise KafkaSetupError(f"`{KAFKA_SH} fetch` failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def _admin(bootstrap: str, timeout_ms: int = 5000):
    from kafka.admin import KafkaAdminClient

    return KafkaAdminClient(
        bootstrap_servers=bootstrap, client_id="kafka-fixture", request_timeout_ms=timeout_ms
    )


def wait_ready(bootstrap: str, timeout: float = 90.0, proc: subprocess.Popen | None = None,
               describe=lambda: "") -> float:
    """Block until a kafka-python admin client gets cluster metadata from `bootstrap`.

    Returns the seconds waited. Fails early if `proc` exits. `describe()` adds log excerpts to errors.
    """
    started = time.monotonic()
    deadline = started + timeout
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise KafkaSetupError(f"broker exited with code {proc.returncode} during startup\n{describe()}")
        try:
            # Cheap TCP probe first: the data-plane port opens only once the broker is unfenced.
            socket.create_connection((host, int(port)), timeout=1).close()
            admin = _admin(bootstrap)
            try:
                admin.list_topics()
                if admin.describe_cluster().get("brokers"):
                    return time.monotonic() - started
            finally:
                admin.close()
        except Exception as exc:  # connection refused, NoBrokersAvailable, timeouts while electing
            last_error = exc
        time.sleep(0.2)
    raise KafkaSetupError(
        f"Kafka at {bootstrap} not ready after {timeout:.0f}s (last error: {last_error!r})\n{describe()}"
    )


def create_topic(bootstrap: str, name: str, partitions: int = 1, replication_factor: int = 1,
                 configs: dict[str, str] | None = None, timeout: float = 30.0) -> None:
    """Create `name` (idempotent) and wait until every partition has a leader."""
    from kafka.errors import TopicAlreadyExistsError

    admin = _admin(bootstrap, timeout_ms=int(timeout * 1000))
    try:
        spec = {"num_partitions": partitions, "replication_factor": replication_factor,
                "configs": dict(configs or {})}
        try:
            if hasattr(admin, "wait_for_topics"):  # kafka-python >= 3
                admin.create_topics({name: spec}, timeout_ms=int(timeout * 1000))
            else:  # kafka-python 2.x
                from kafka.admin import NewTopic

                admin.create_topics([NewTopic(name, partitions, replication_factor,
                                              topic_configs=spec["configs"])],
                                    timeout_ms=int(timeout * 1000))
        except TopicAlreadyExistsError:
            pass
        _wait_topic(admin, name, timeout)
    finally:
        admin.close()


def _wait_topic(admin, name: str, timeout: float) -> None:
    if hasattr(admin, "wait_for_topics"):
        admin.wait_for_topics([name], timeout_ms=int(timeout * 1000))
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        topics = admin.describe_topics([name])
        parts = topics[0].get("partitions") if topics else None
        if parts and all(p.get("leader", -1) >= 0 for p in parts):
            return
        time.sleep(0.1)
    raise KafkaSetupError(f"topic {name} has no leader after {timeout}s")


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel SIGTERMs it when the thread that spawned it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


_LIVE: set["KafkaBroker"] = set()
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all_live() -> None:
    for broker in list(_LIVE):
        broker.stop(timeout=15)


class KafkaBroker:
    """One local single-node KRaft broker (combined broker+controller) run from deploy/kafka.

    The ports and data dir are fixed at construction, so ``stop()`` then ``start()`` brings the same
    cluster back at the same address with its topics, records and committed offsets.
    ``stop(kill=True)`` simulates a crash (SIGKILL). Usable as a context manager.
    Start it from a thread that outlives it (the main thread in pytest): see ``_die_with_parent``.
    """

    def __init__(self, data_dir: str | os.PathLike | None = None, port: int | None = None,
                 controller_port: int | None = None, heap: str = "512M",
                 start_timeout: float = 90.0, stop_timeout: float = 30.0):
        self._owns_dir = data_dir is None
        # Ports picked here may be grabbed (e.g. as a client's ephemeral port) before the JVM binds them;
        # only then, and only before the first successful start, start() retries on fresh ports.
        self._auto_ports = port is None and controller_port is None
        self._started_once = False
        self.data_dir = Path(data_dir) if data_dir else Path(tempfile.mkdtemp(prefix="kafka-broker-"))
        self.port = port or free_port()
        self.controller_port = controller_port or free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        self.heap = heap
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.proc: subprocess.Popen | None = None
        self.last_startup_seconds: float | None = None
        self._log_offset = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def server_log(self) -> Path:
        return self.log_dir / "server.log"

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def describe(self, lines: int = 40) -> str:
        """Where the logs are plus their last lines, for error messages."""
        out = [f"broker logs: {self.log_dir}"]
        for name in ("format.log", "stdout.log", "server.log"):
            path = self.log_dir / name
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path} (last {len(tail)} lines)")
                out.extend(tail)
        return "\n".join(out)

    def start(self) -> str:
        """Format the data dir if new, start the broker, wait until it serves metadata; returns bootstrap."""
        if self.is_running():
            return self.bootstrap
        ensure_jars()
        attempts = 3 if self._auto_ports and not self._started_once else 1
        for attempt in range(1, attempts + 1):
            try:
                self._start_once()
                self._started_once = True
                return self.bootstrap
            except _PortInUse:
                if attempt == attempts:
                    raise
                self.port, self.controller_port = free_port(), free_port()
                shutil.rmtree(self.data_dir / "data", ignore_errors=True)  # never served: nothing to keep
        raise AssertionError("unreachable")

    def _listening_ports(self) -> list[int]:
        busy = []
        for p in (self.port, self.controller_port):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", p)) == 0:
                    busy.append(p)
        return busy

    def _bind_failed(self) -> bool:
        try:
            with open(self.server_log, "rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return False
        return "Socket server failed to bind" in text or "java.net.BindException" in text

    def _start_once(self) -> None:
        busy = self._listening_ports()
        if busy:
            raise _PortInUse(f"port(s) {busy} on 127.0.0.1 already in use")
        # server.log keeps every run on this data dir; bind errors are judged on this run's part only.
        self._log_offset = self.server_log.stat().st_size if self.server_log.exists() else 0
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, KAFKA_PORT=str(self.port), KAFKA_CONTROLLER_PORT=str(self.controller_port),
                   KAFKA_DATA_DIR=str(self.data_dir), KAFKA_HEAP=self.heap)
        started = time.monotonic()
        with open(self.log_dir / "stdout.log", "ab") as stdout:
            self.proc = subprocess.Popen(
                ["bash", str(KAFKA_SH), "run"], env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_die_with_parent,
            )
        with _LIVE_LOCK:
            _LIVE.add(self)
        try:
            wait_ready(self.bootstrap, self.start_timeout, self.proc, self.describe)
        except BaseException as exc:
            self.stop(kill=True)
            if isinstance(exc, KafkaSetupError) and self._bind_failed():
                raise _PortInUse(str(exc)) from exc
            raise
        self.last_startup_seconds = time.monotonic() - started

    def stop(self, timeout: float | None = None, kill: bool = False) -> None:
        """SIGTERM (clean shutdown) and wait; SIGKILL if `kill` or if it has not exited in `timeout` s."""
        proc, self.proc = self.proc, None
        with _LIVE_LOCK:
            _LIVE.discard(self)
        if proc is None or proc.poll() is not None:
            return
        timeout = self.stop_timeout if timeout is None else timeout
        try:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            raise

    def restart(self, kill: bool = False) -> str:
        self.stop(kill=kill)
        return self.start()

    def cleanup(self) -> None:
        """Stop and, if the data dir was created here, delete it."""
        self.stop()
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "KafkaBroker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"KafkaBroker({self.bootstrap}, {state}, data_dir={self.data_dir})"


_SESSION_BROKER: KafkaBroker | None = None


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory) -> str:
    """Bootstrap address of a real Kafka broker: $KAFKA_BOOTSTRAP_SERVERS, or one started for this session."""
    global _SESSION_BROKER
    external = os.environ.get(BOOTSTRAP_ENV, "").strip()
    if external:
        wait_ready(external, timeout=30)
        yield external
        return
    broker = KafkaBroker(data_dir=tmp_path_factory.mktemp("kafka"))
    _SESSION_BROKER = broker
    try:
        broker.start()
        print(f"\nkafka: broker {broker.bootstrap} ready in {broker.last_startup_seconds:.1f}s "
              f"(logs {broker.log_dir})")
        yield broker.bootstrap
    finally:
        broker.stop()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """On a failing run, say where the session broker's logs are (pytest keeps its temp dirs)."""
    if _SESSION_BROKER is not None and exitstatus != 0 and _SESSION_BROKER.server_log.exists():
        terminalreporter.write_line(f"kafka: session broker logs kept in {_SESSION_BROKER.log_dir}")
