#!/usr/bin/env bash
# Local single-node Apache Kafka broker (KRaft, combined broker+controller) from Maven Central jars.
#
#   kafka.sh fetch    download the broker classpath into deploy/kafka/lib once (needs mvn; cached afterwards)
#   kafka.sh up       format storage if needed, start in the background, wait until ready, print bootstrap
#   kafka.sh down     stop cleanly (SIGTERM, then SIGKILL after KAFKA_STOP_TIMEOUT s) and wait for exit
#   kafka.sh status   print whether the broker of KAFKA_DATA_DIR runs (exit 0 running, 3 stopped)
#   kafka.sh run      format if needed, then exec the broker in the foreground (used by tests/kafka_fixture.py)
#
# Environment (defaults):
#   KAFKA_PORT=9092 KAFKA_CONTROLLER_PORT=9093 KAFKA_DATA_DIR=<repo>/.kafka-data KAFKA_HEAP=512M
#   KAFKA_START_TIMEOUT=90 KAFKA_STOP_TIMEOUT=30 KAFKA_JVM_OPTS="" JAVA_HOME (optional)
# Layout of KAFKA_DATA_DIR: server.properties (rendered), data/ (log.dirs), logs/ (server.log, stdout.log),
# kafka.pid. The data survives `down`/`up`; delete the directory for a fresh cluster.
set -euo pipefail

KAFKA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$KAFKA_DIR/../.." && pwd)"
LIB_DIR="$KAFKA_DIR/lib"
STAMP="$LIB_DIR/.fetched"

KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$REPO_DIR/.kafka-data}"
KAFKA_HEAP="${KAFKA_HEAP:-512M}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"

if [[ -n "${JAVA_HOME:-}" ]]; then JAVA="$JAVA_HOME/bin/java"; else JAVA="java"; fi

die() { echo "kafka.sh: $*" >&2; exit 1; }

need_java() {
    command -v "$JAVA" >/dev/null 2>&1 || die "java not found: Kafka 4.x needs Java 17+ (apt-get install openjdk-17-jre-headless)"
    local v
    v="$("$JAVA" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)"
    [[ -n "$v" && "$v" -ge 17 ]] || die "Java 17+ required, found: $("$JAVA" -version 2>&1 | head -1)"
}

pom_hash() { sha256sum "$KAFKA_DIR/pom.xml" | cut -d' ' -f1; }

is_fetched() { [[ -f "$STAMP" && "$(cat "$STAMP")" == "$(pom_hash)" ]]; }

cmd_fetch() {
    is_fetched && return 0
    command -v mvn >/dev/null 2>&1 || die "mvn not found: it is needed once to download the Kafka jars (apt-get install maven)"
    mkdir -p "$KAFKA_DIR/target"
    # Serialise concurrent fetches (two pytest sessions on a fresh clone).
    exec 9>"$KAFKA_DIR/target/fetch.lock"
    flock 9
    is_fetched && return 0
    local tmp="$KAFKA_DIR/target/lib.tmp.$$"
    rm -rf "$tmp"
    local args=(-B -q -f "$KAFKA_DIR/pom.xml" dependency:copy-dependencies -DincludeScope=runtime
                -DoutputDirectory="$tmp")
    # Offline first: after one online run everything is in ~/.m2 and this takes seconds.
    if ! mvn -o "${args[@]}" >"$KAFKA_DIR/target/fetch.log" 2>&1; then
        echo "kafka.sh: downloading Kafka jars from Maven Central (once)..." >&2
        mvn "${args[@]}" >"$KAFKA_DIR/target/fetch.log" 2>&1 \
            || { tail -30 "$KAFKA_DIR/target/fetch.log" >&2; die "mvn dependency:copy-dependencies failed (log: $KAFKA_DIR/target/fetch.log)"; }
    fi
    ls "$tmp"/kafka_2.13-*.jar >/dev/null 2>&1 || die "fetch produced no kafka_2.13 jar in $tmp"
    pom_hash >"$tmp/.fetched"
    rm -rf "$LIB_DIR"
    mv "$tmp" "$LIB_DIR"
    echo "kafka.sh: $(ls "$LIB_DIR"/*.jar | wc -l) jars in $LIB_DIR ($(basename "$LIB_DIR"/kafka_2.13-*.jar .jar))" >&2
}

render_config() {
    mkdir -p "$KAFKA_DATA_DIR/data" "$KAFKA_DATA_DIR/logs"
    sed -e "s#@BROKER_PORT@#$KAFKA_PORT#g" \
        -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#g" \
        -e "s#@LOG_DIRS@#$KAFKA_DATA_DIR/data#g" \
        "$KAFKA_DIR/server.properties.template" >"$KAFKA_DATA_DIR/server.properties"
}

random_cluster_id() {
    # Same shape as Uuid.randomUuid(): 16 random bytes, URL-safe base64, no padding; never starts with '-'.
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" != -* ]] && { echo "$id"; return; }
    done
}

format_if_needed() {
    [[ -f "$KAFKA_DATA_DIR/data/meta.properties" ]] && return 0
    # Static controller.quorum.voters: format with no --standalone / --initial-controllers flag.
    "$JAVA" -Xmx256M -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
        -Dkafka.logs.dir="$KAFKA_DATA_DIR/logs" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
        -cp "$LIB_DIR/*" kafka.tools.StorageTool format \
        -t "$(random_cluster_id)" -c "$KAFKA_DATA_DIR/server.properties" \
        >"$KAFKA_DATA_DIR/logs/format.log" 2>&1 \
        || { cat "$KAFKA_DATA_DIR/logs/format.log" >&2; die "kafka-storage format failed"; }
}

cmd_run() {
    need_java
    is_fetched || cmd_fetch
    render_config
    format_if_needed
    echo $$ >"$KAFKA_DATA_DIR/kafka.pid"
    # Options from bin/kafka-run-class.sh, heap sized for a 2-core dev machine.
    # shellcheck disable=SC2086
    exec "$JAVA" -Xms"$KAFKA_HEAP" -Xmx"$KAFKA_HEAP" -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:MaxInlineLevel=15 \
        -Djava.awt.headless=true \
        -Dkafka.logs.dir="$KAFKA_DATA_DIR/logs" -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" \
        ${KAFKA_JVM_OPTS:-} \
        -cp "$LIB_DIR/*" kafka.Kafka "$KAFKA_DATA_DIR/server.properties"
}

# Prints the pid of the running broker of KAFKA_DATA_DIR, if any (checks it really is our kafka.Kafka).
running_pid() {
    local pidfile="$KAFKA_DATA_DIR/kafka.pid" pid
    [[ -f "$pidfile" ]] || return 1
    pid="$(cat "$pidfile")"
    [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "kafka.Kafka $KAFKA_DATA_DIR/server.properties" || return 1
    echo "$pid"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_up() {
    local pid
    if pid="$(running_pid)"; then
        echo "kafka.sh: already running (pid $pid)" >&2
        echo "127.0.0.1:$(sed -n 's#^advertised.listeners=PLAINTEXT://127.0.0.1:##p' "$KAFKA_DATA_DIR/server.properties")"
        return 0
    fi
    need_java
    cmd_fetch
    for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
        port_open "$p" && die "port $p on 127.0.0.1 is already in use (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
    done
    mkdir -p "$KAFKA_DATA_DIR/logs"
    rm -f "$KAFKA_DATA_DIR/kafka.pid"
    local start=$SECONDS
    setsid "$0" run </dev/null >"$KAFKA_DATA_DIR/logs/stdout.log" 2>&1 &
    local child=$!
    # The data-plane listener opens only once the broker is unfenced (SocketServer defers the bind),
    # so an accepting port means the broker serves requests.
    local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
    while ! port_open "$KAFKA_PORT"; do
        if ! kill -0 "$child" 2>/dev/null; then
            echo "--- $KAFKA_DATA_DIR/logs/stdout.log" >&2; tail -30 "$KAFKA_DATA_DIR/logs/stdout.log" >&2 || true
            echo "--- $KAFKA_DATA_DIR/logs/server.log" >&2; tail -30 "$KAFKA_DATA_DIR/logs/server.log" >&2 || true
            die "broker exited during startup"
        fi
        if ((SECONDS >= deadline)); then
            tail -30 "$KAFKA_DATA_DIR/logs/server.log" >&2 || true
            kill -TERM "$child" 2>/dev/null || true
            die "broker not ready on 127.0.0.1:$KAFKA_PORT after ${KAFKA_START_TIMEOUT}s (logs: $KAFKA_DATA_DIR/logs)"
        fi
        sleep 0.2
    done
    echo "kafka.sh: broker up in $((SECONDS - start))s (pid $child, data $KAFKA_DATA_DIR, logs $KAFKA_DATA_DIR/logs)" >&2
    echo "127.0.0.1:$KAFKA_PORT"
}

cmd_down() {
    local pid
    if ! pid="$(running_pid)"; then
        echo "kafka.sh: not running ($KAFKA_DATA_DIR)" >&2
        return 0
    fi
    kill -TERM "$pid"
    local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "kafka.sh: no clean exit after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
        fi
        sleep 0.2
    done
    rm -f "$KAFKA_DATA_DIR/kafka.pid"
    echo "kafka.sh: stopped (pid $pid)" >&2
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running pid=$pid bootstrap=127.0.0.1:$(sed -n 's#^advertised.listeners=PLAINTEXT://127.0.0.1:##p' "$KAFKA_DATA_DIR/server.properties") data=$KAFKA_DATA_DIR"
        return 0
    fi
    echo "stopped data=$KAFKA_DATA_DIR"
    return 3
}

case "${1:-}" in
    fetch) need_java; cmd_fetch ;;
    run) cmd_run ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 {fetch|up|down|status|run}" >&2; exit 2 ;;
esac
