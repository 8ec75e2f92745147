#!/usr/bin/env bash
# Starts and stops the real servers segstream's tests and local runs use: an Apache Kafka broker
# (KRaft combined mode, jars from Maven Central, Java 17+) and Redis (Debian's redis-server).
# No Docker. Idempotent: `up` leaves running servers alone, `down` leaves nothing behind.
#
#   scripts/services.sh up|down|status|restart-kafka|cluster-node PORT
#
# restart-kafka stops the broker and starts it again on the same data (the chaos suite's broker
# restart).
#
# The broker also listens with SASL_SSL and SCRAM on KAFKA_SECURE_PORT, for the tests of
# secured connections: a CA and certificates are made in $SERVICES_DIR/tls at the first `up`
# (the tests' TLS Redis uses them too), and the SCRAM user segstream / segstream-test-secret is
# added when the broker's storage is formatted. Test credentials only, on loopback.
#
# Settings (environment): KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093), KAFKA_SECURE_PORT
# (9094), REDIS_PORT (6379), REDIS_CLUSTER_PORT (7000: the cluster's nodes take it and the five
# ports after it), SERVICES_DIR (.services: data, pids, tls/ and logs/), KAFKA_HEAP (512m).
#
# `up` also starts a Redis Cluster of 3 masters and 3 replicas (redis+cluster://127.0.0.1:7000):
# the tests run the state and model stores, serve, the API and a failover against it too.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
kafka_port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
secure_port="${KAFKA_SECURE_PORT:-9094}"
redis_port="${REDIS_PORT:-6379}"
cluster_port="${REDIS_CLUSTER_PORT:-7000}"
dir="${SERVICES_DIR:-$root/.services}"
logs="$dir/logs"
lib="$root/scripts/kafka/target/lib"
heap="${KAFKA_HEAP:-512m}"

# Users live in buckets of a few dozen: these keep each bucket one compact listpack
# (docs/sizing.md).
listpack="--hash-max-listpack-entries 512 --hash-max-listpack-value 1024"

log() { printf 'services: %s\n' "$*" >&2; }

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

need_root_or_sudo() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

ensure_redis_binary() {
  command -v redis-server >/dev/null && return
  log "installing redis-server with apt-get"
  need_root_or_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root_or_sudo apt-get install -y -qq redis-server >/dev/null
}

# Prometheus and promtool run the dashboards' queries and the alert rules' tests; the tests
# start their own Prometheus, so this only installs it.
ensure_prometheus_binary() {
  command -v prometheus >/dev/null && command -v promtool >/dev/null && return
  log "installing prometheus (and promtool) with apt-get"
  need_root_or_sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive need_root_or_sudo apt-get install -y -qq --no-install-recommends \
    prometheus >/dev/null
}

ensure_kafka_jars() {
  if ls "$lib"/kafka_2.13-*.jar >/dev/null 2>&1; then return; fi
  command -v java >/dev/null || { log "java 17+ is required for the Kafka broker"; exit 1; }
  command -v mvn >/dev/null || { log "maven is required to fetch the Kafka broker"; exit 1; }
  log "fetching the Kafka broker from Maven Central (first run only)"
  (cd "$root/scripts/kafka" && mvn -q -B dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory=target/lib)
}

redis_up() {
  ensure_redis_binary
  if alive "$dir/redis.pid" && redis-cli -p "$redis_port" ping >/dev/null 2>&1; then
    log "redis already running on 127.0.0.1:$redis_port"; return
  fi
  if port_open "$redis_port"; then
    log "port $redis_port is taken by another process; set REDIS_PORT"; exit 1
  fi
  mkdir -p "$dir/redis" "$logs"
  # No persistence: test data is disposable and fsyncs would only slow the tests down.
  redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no $listpack \
    --dir "$dir/redis" --daemonize yes --pidfile "$dir/redis.pid" \
    --logfile "$logs/redis.log" --protected-mode yes
  for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" ping >/dev/null 2>&1 && { log "redis ready on 127.0.0.1:$redis_port"; return; }
    sleep 0.1
  done
  log "redis did not become ready; see $logs/redis.log"; exit 1
}

cluster_ports() { seq "$cluster_port" $((cluster_port + 5)); }

# Six nodes, each its own redis-server; the first three are made masters, one replica each. A
# node's pid file is $dir/cluster/<port>.pid, so a test may kill -9 one and start it again.
redis_cluster_up() {
  ensure_redis_binary
  local node_dir="$dir/cluster"
  if alive "$node_dir/$cluster_port.pid" \
    && redis-cli -p "$cluster_port" cluster info 2>/dev/null | grep -q 'cluster_state:ok'; then
    log "redis cluster already running on 127.0.0.1:$cluster_port-$((cluster_port + 5))"; return
  fi
  mkdir -p "$node_dir" "$logs"
  local port
  for port in $(cluster_ports); do
    alive "$node_dir/$port.pid" && continue
    if port_open "$port"; then
      log "port $port is taken by another process; set REDIS_CLUSTER_PORT"; exit 1
    fi
    redis_cluster_node "$port"
  done
  for port in $(cluster_ports); do
    for _ in $(seq 1 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  if ! redis-cli -p "$cluster_port" cluster info | grep -q 'cluster_known_nodes:6'; then
    local nodes=()
    for port in $(cluster_ports); do nodes+=("127.0.0.1:$port"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes \
      >>"$logs/redis-cluster.log" 2>&1
  fi
  for _ in $(seq 1 300); do
    if redis-cli -p "$cluster_port" cluster info | grep -q 'cluster_state:ok'; then
      log "redis cluster ready on 127.0.0.1:$cluster_port-$((cluster_port + 5))"; return
    fi
    sleep 0.1
  done
  log "the redis cluster did not become ready; see $logs/redis-cluster.log"; exit 1
}

# One cluster node (also how a test restarts a node it killed: `cluster-node PORT`). Short
# node timeouts: a replica takes over from a killed master in about a second.
redis_cluster_node() {
  local port="$1" node_dir="$dir/cluster"
  mkdir -p "$node_dir/$port"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no $listpack \
    --cluster-enabled yes --cluster-config-file "$node_dir/$port/nodes.conf" \
    --cluster-node-timeout 1000 --dir "$node_dir/$port" --daemonize yes \
    --pidfile "$node_dir/$port.pid" --logfile "$logs/redis-$port.log" --protected-mode yes
}

make_tls() {
  # A CA, and certificates it signed for the servers (127.0.0.1, localhost) and a client.
  local tls="$dir/tls"
  [ -f "$tls/broker-keystore.pem" ] && return
  mkdir -p "$tls"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=segstream test CA" \
    -keyout "$tls/ca.key" -out "$tls/ca.pem" >/dev/null 2>&1
  for name in server client; do
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$name" \
      -keyout "$tls/$name.key" -out "$tls/$name.csr" >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$tls/$name.ext"
    openssl x509 -req -in "$tls/$name.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca.key" \
      -CAcreateserial -days 30 -extfile "$tls/$name.ext" -out "$tls/$name.pem" >/dev/null 2>&1
  done
  # The broker reads a PEM key store from a file only with an encrypted PKCS#8 key.
  openssl pkcs8 -topk8 -v1 PBE-SHA1-3DES -passout pass:broker-key-secret \
    -in "$tls/server.key" -out "$tls/server.p8" >/dev/null 2>&1
  cat "$tls/server.p8" "$tls/server.pem" "$tls/ca.pem" >"$tls/broker-keystore.pem"
  chmod 600 "$tls"/*.key "$tls"/*.p8
}

write_kafka_config() {
  cat >"$dir/kafka/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$kafka_port,SASL_SSL://127.0.0.1:$secure_port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$kafka_port,SASL_SSL://127.0.0.1:$secure_port
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/broker-keystore.pem
ssl.key.password=broker-key-secret
ssl.truststore.type=PEM
ssl.truststore.location=$dir/tls/ca.pem
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/kafka/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=24
PROPS
  cat >"$dir/kafka/log4j2.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="warn">
  <Appenders>
    <File name="file" fileName="$logs/kafka.log">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="info"/>
    <Logger name="org.apache.kafka" level="info"/>
    <Logger name="state.change.logger" level="warn"/>
    <Root level="warn"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
XML
}

kafka_ready() {
  # The broker logs this only once it serves metadata requests, unlike an open port.
  grep -q 'Kafka Server started' "$logs/kafka.log" 2>/dev/null || return 1
  local py="$root/.venv/bin/python"
  [ -x "$py" ] || return 0
  "$py" - "$kafka_port" <<'PY' >/dev/null 2>&1
import sys
from kafka import KafkaAdminClient
admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{sys.argv[1]}", request_timeout_ms=3000)
admin.list_topics()
admin.close()
PY
}

kafka_up() {
  ensure_kafka_jars
  if alive "$dir/kafka.pid"; then log "kafka already running on 127.0.0.1:$kafka_port"; return; fi
  for p in "$kafka_port" "$controller_port" "$secure_port"; do
    if port_open "$p"; then log "port $p is taken by another process; set KAFKA_PORT/KAFKA_CONTROLLER_PORT"; exit 1; fi
  done
  mkdir -p "$dir/kafka/data" "$logs"
  make_tls
  write_kafka_config
  : >"$logs/kafka.log"
  local java_opts=(-Xms256m "-Xmx$heap" -XX:+UseG1GC -XX:TieredStopAtLevel=1
                   -Djava.awt.headless=true "-Dlog4j2.configurationFile=$dir/kafka/log4j2.xml"
                   -cp "$lib/*")
  if [ ! -f "$dir/kafka/data/meta.properties" ]; then
    java "${java_opts[@]}" kafka.tools.StorageTool format -t segstream-local-cluster0 \
      -c "$dir/kafka/server.properties" --ignore-formatted \
      --add-scram 'SCRAM-SHA-512=[name=segstream,password=segstream-test-secret]' \
      --add-scram 'SCRAM-SHA-256=[name=segstream,password=segstream-test-secret]' \
      >>"$logs/kafka-format.log" 2>&1
  fi
  nohup java "${java_opts[@]}" kafka.Kafka "$dir/kafka/server.properties" \
    >>"$logs/kafka.out" 2>&1 </dev/null &
  echo $! >"$dir/kafka.pid"
  for _ in $(seq 1 600); do
    if kafka_ready; then log "kafka ready on 127.0.0.1:$kafka_port"; return; fi
    alive "$dir/kafka.pid" || { log "kafka exited; see $logs/kafka.log and $logs/kafka.out"; exit 1; }
    sleep 0.1
  done
  log "kafka did not become ready in 60 s; see $logs/kafka.log"; exit 1
}

stop_pid() {
  local name="$1" pidfile="$2"
  if alive "$pidfile"; then
    local pid; pid="$(cat "$pidfile")"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    log "$name stopped"
  fi
  rm -f "$pidfile"
}

case "${1:-}" in
  up) ensure_prometheus_binary; redis_up; redis_cluster_up; kafka_up ;;
  down)
    stop_pid kafka "$dir/kafka.pid"
    stop_pid redis "$dir/redis.pid"
    for port in $(cluster_ports); do stop_pid "redis cluster node $port" "$dir/cluster/$port.pid"; done
    # Data is disposable: the next `up` starts from empty servers.
    rm -rf "$dir/kafka" "$dir/redis" "$dir/cluster" "$dir/tls" ;;
  cluster-node) redis_cluster_node "${2:?usage: $0 cluster-node PORT}" ;;
  restart-kafka) stop_pid kafka "$dir/kafka.pid"; kafka_up ;;
  status)
    alive "$dir/redis.pid" && echo "redis: running on 127.0.0.1:$redis_port" || echo "redis: stopped"
    alive "$dir/cluster/$cluster_port.pid" \
      && echo "redis cluster: running on 127.0.0.1:$cluster_port-$((cluster_port + 5))" \
      || echo "redis cluster: stopped"
    alive "$dir/kafka.pid" && echo "kafka: running on 127.0.0.1:$kafka_port" || echo "kafka: stopped" ;;
  *) echo "usage: $0 up|down|status|restart-kafka|cluster-node PORT" >&2; exit 2 ;;
esac
