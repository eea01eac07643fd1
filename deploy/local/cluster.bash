# Cluster profile of deploy/local/stack (`deploy/local/stack <command> --cluster ...`), sourced
# by it after its own definitions, which this file overrides where the profile differs:
#
#   zookeeper                      one ZooKeeper (Maven Central jars), for ClickHouse replication
#   kafka-1 kafka-2 kafka-3        three KRaft nodes, each broker + controller (3-voter quorum)
#   clickhouse-1 .. clickhouse-4   Debian's clickhouse-server: shard 01 = 1, 2; shard 02 = 3, 4
#
# Same conventions as the single-node stack (pid files, logs, status, down --purge with the
# state marker), in a state dir of its own: $STREAMS_LOCAL_CLUSTER_STATE_DIR, default
# <repo>/.state-cluster. Ports are bases: node N listens on BASE + N - 1. They are below Linux's
# ephemeral range (32768-60999): a port in it can be taken for a moment by any outgoing
# connection, and a node restarted then cannot listen on it.
#   STREAMS_LOCAL_CLUSTER_ZOOKEEPER_PORT        29181
#   STREAMS_LOCAL_CLUSTER_KAFKA_PORT            29091 (29091-29093)
#   STREAMS_LOCAL_CLUSTER_KAFKA_CONTROLLER_PORT 29191 (29191-29193)
#   STREAMS_LOCAL_CLUSTER_CLICKHOUSE_PORT       29001 (29001-29004, native protocol)
#   STREAMS_LOCAL_CLUSTER_CLICKHOUSE_HTTP_PORT  29011 (29011-29014)
#   STREAMS_LOCAL_CLUSTER_CLICKHOUSE_INTERSERVER_PORT 29021 (29021-29024, replica fetches)
# The ClickHouse cluster is called $STREAMS_LOCAL_CLUSTER_NAME (default local_2x2).
# shellcheck shell=bash

ZOOKEEPER_VERSION=3.8.4
ZOOKEEPER_CACHE=$REPO_DIR/.cache/zookeeper/$ZOOKEEPER_VERSION
ZOOKEEPER_LIB=$ZOOKEEPER_CACHE/lib

STATE_DIR=$(realpath -m "${STREAMS_LOCAL_CLUSTER_STATE_DIR:-$REPO_DIR/.state-cluster}")
RUN_DIR=$STATE_DIR/run
LOG_DIR=$STATE_DIR/logs
STATE_MARKER=$STATE_DIR/.streams-local-stack
ZOOKEEPER_DIR=$STATE_DIR/zookeeper

CLUSTER_NAME=${STREAMS_LOCAL_CLUSTER_NAME:-local_2x2}
ZOOKEEPER_PORT=${STREAMS_LOCAL_CLUSTER_ZOOKEEPER_PORT:-29181}
CLUSTER_KAFKA_PORT=${STREAMS_LOCAL_CLUSTER_KAFKA_PORT:-29091}
CLUSTER_KAFKA_CONTROLLER_PORT=${STREAMS_LOCAL_CLUSTER_KAFKA_CONTROLLER_PORT:-29191}
CLUSTER_CLICKHOUSE_PORT=${STREAMS_LOCAL_CLUSTER_CLICKHOUSE_PORT:-29001}
CLUSTER_CLICKHOUSE_HTTP_PORT=${STREAMS_LOCAL_CLUSTER_CLICKHOUSE_HTTP_PORT:-29011}
CLUSTER_CLICKHOUSE_INTERSERVER_PORT=${STREAMS_LOCAL_CLUSTER_CLICKHOUSE_INTERSERVER_PORT:-29021}

KAFKA_NODES=(1 2 3)
CLICKHOUSE_NODES=(1 2 3 4)
SERVICES=(zookeeper kafka-1 kafka-2 kafka-3 clickhouse-1 clickhouse-2 clickhouse-3 clickhouse-4)
ALL_SERVICES=("${SERVICES[@]}")

node_of() { echo "${1##*-}"; }

# ---------------------------------------------------------------------------------------------
# install: the single-node stack's, plus ZooKeeper's jars

install_zookeeper_jars() {
    local pom=$ZOOKEEPER_CACHE/pom.xml marker=$ZOOKEEPER_CACHE/.complete want
    mkdir -p "$ZOOKEEPER_CACHE"
    render "$TEMPLATES/zookeeper-classpath.pom.xml" "$pom"
    want=$(sha256sum <"$pom" | cut -d' ' -f1)
    [[ -f $marker && $(<"$marker") == "$want" && -d $ZOOKEEPER_LIB ]] && return 0
    say "resolving ZooKeeper $ZOOKEEPER_VERSION jars with Maven into ${ZOOKEEPER_LIB#"$REPO_DIR"/}"
    rm -rf "$ZOOKEEPER_CACHE/lib.tmp"
    (cd "$ZOOKEEPER_CACHE" && mvn -q -B dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory=lib.tmp) >"$ZOOKEEPER_CACHE/mvn.log" 2>&1 || {
        cat "$ZOOKEEPER_CACHE/mvn.log" >&2
        die "Maven could not resolve the ZooKeeper classpath"
    }
    [[ -f $ZOOKEEPER_CACHE/lib.tmp/zookeeper-$ZOOKEEPER_VERSION.jar ]] || die "Maven did not produce zookeeper-$ZOOKEEPER_VERSION.jar"
    rm -rf "$ZOOKEEPER_LIB"
    mv "$ZOOKEEPER_CACHE/lib.tmp" "$ZOOKEEPER_LIB"
    echo "$want" >"$marker"
}

cmd_install() {
    install_apt_packages
    install_kafka_jars
    install_zookeeper_jars
    install_venv
}

# ---------------------------------------------------------------------------------------------
# per-service identity, ports and readiness

config_of() {
    case $1 in
    zookeeper) echo "$ZOOKEEPER_DIR/zoo.cfg" ;;
    kafka-*) echo "$STATE_DIR/$1/server.properties" ;;
    clickhouse-*) echo "$STATE_DIR/$1/etc/config.xml" ;;
    esac
}

ports_of() {
    local n
    n=$(node_of "$1")
    case $1 in
    zookeeper) echo "$ZOOKEEPER_PORT" ;;
    kafka-*) echo "$((CLUSTER_KAFKA_PORT + n - 1)) $((CLUSTER_KAFKA_CONTROLLER_PORT + n - 1))" ;;
    clickhouse-*)
        echo "$((CLUSTER_CLICKHOUSE_PORT + n - 1)) $((CLUSTER_CLICKHOUSE_HTTP_PORT + n - 1))" \
            "$((CLUSTER_CLICKHOUSE_INTERSERVER_PORT + n - 1))"
        ;;
    esac
}

# ZooKeeper is ready once `srvr` reports a mode; `ruok` answers imok even while the server
# cannot serve requests.
zookeeper_serving() {
    timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/$0 && printf srvr >&3 && cat <&3' "$ZOOKEEPER_PORT" \
        2>/dev/null | grep -q '^Mode:'
}

ready() {
    local n
    n=$(node_of "$1")
    case $1 in
    zookeeper) zookeeper_serving ;;
    kafka-*) tcp_open "$((CLUSTER_KAFKA_PORT + n - 1))" ;; # opens once the broker is unfenced
    clickhouse-*)
        [[ $(curl -sf --max-time 2 "http://127.0.0.1:$((CLUSTER_CLICKHOUSE_HTTP_PORT + n - 1))/?query=SELECT%201") == 1 ]]
        ;;
    esac
}

# ---------------------------------------------------------------------------------------------
# start

start_service() {
    case $1 in
    zookeeper) start_zookeeper ;;
    kafka-*) start_kafka_node "$(node_of "$1")" ;;
    clickhouse-*) start_clickhouse_node "$(node_of "$1")" ;;
    esac
}

start_zookeeper() {
    [[ -f $ZOOKEEPER_CACHE/.complete ]] || die "ZooKeeper jars missing: run 'deploy/local/stack install --cluster'"
    mkdir -p "$ZOOKEEPER_DIR/data"
    render "$TEMPLATES/zookeeper.cfg" "$ZOOKEEPER_DIR/zoo.cfg"
    cp "$TEMPLATES/zookeeper-logback.xml" "$ZOOKEEPER_DIR/logback.xml"
    start_bg zookeeper "$ZOOKEEPER_DIR" java -Xms64m -Xmx256m -XX:+UseSerialGC \
        "-Dlogback.configurationFile=$ZOOKEEPER_DIR/logback.xml" \
        -cp "$ZOOKEEPER_LIB/*" org.apache.zookeeper.server.ZooKeeperServerMain "$ZOOKEEPER_DIR/zoo.cfg"
}

kafka_voters() {
    local n voters=()
    for n in "${KAFKA_NODES[@]}"; do
        voters+=("$n@127.0.0.1:$((CLUSTER_KAFKA_CONTROLLER_PORT + n - 1))")
    done
    (IFS=,; echo "${voters[*]}")
}

render_kafka_node() {
    local NODE=$1 NODE_DIR=$STATE_DIR/kafka-$1 KAFKA_VOTERS
    local NODE_PORT=$((CLUSTER_KAFKA_PORT + NODE - 1)) NODE_CONTROLLER_PORT=$((CLUSTER_KAFKA_CONTROLLER_PORT + NODE - 1))
    KAFKA_VOTERS=$(kafka_voters)
    mkdir -p "$NODE_DIR/data" "$NODE_DIR/logs"
    render "$TEMPLATES/cluster-kafka-server.properties" "$NODE_DIR/server.properties"
    KAFKA_DIR=$NODE_DIR render "$TEMPLATES/kafka-log4j2.yaml" "$NODE_DIR/log4j2.yaml"
}

start_kafka_node() {
    local dir=$STATE_DIR/kafka-$1 n
    [[ -f $KAFKA_CACHE/.complete ]] || die "Kafka jars missing: run 'deploy/local/stack install --cluster'"
    for n in "${KAFKA_NODES[@]}"; do render_kafka_node "$n"; done # the format step needs all three
    format_kafka_nodes
    start_bg "kafka-$1" "$dir" java "-Xms$KAFKA_HEAP" "-Xmx$KAFKA_HEAP" \
        -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
        -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
        "-Dkafka.logs.dir=$dir/logs" "-Dlog4j2.configurationFile=$dir/log4j2.yaml" \
        -cp "$KAFKA_LIB/*" kafka.Kafka "$dir/server.properties"
}

# All three nodes share one cluster id, formatted once (in parallel: ~1.6 CPU-s each) for the
# static voter set; a node formatted for other voters cannot join, so that is refused.
format_kafka_nodes() {
    local voters n dir cluster_id pids=()
    voters=$(kafka_voters)
    if [[ -f $STATE_DIR/kafka-cluster.id ]]; then
        [[ $(cat "$STATE_DIR/kafka-voters" 2>/dev/null) == "$voters" ]] ||
            die "Kafka data was formatted for other controller ports; run 'deploy/local/stack down --purge --cluster'"
        return 0
    fi
    cluster_id=$(java -cp "$KAFKA_LIB/*" kafka.tools.StorageTool random-uuid | tail -n 1)
    say "kafka: formatting 3 nodes (cluster $cluster_id)"
    for n in "${KAFKA_NODES[@]}"; do
        dir=$STATE_DIR/kafka-$n
        java -cp "$KAFKA_LIB/*" "-Dlog4j2.configurationFile=$dir/log4j2.yaml" kafka.tools.StorageTool \
            format -t "$cluster_id" -c "$dir/server.properties" >>"$(log_file "kafka-$n")" 2>&1 &
        pids+=($!)
    done
    for n in "${pids[@]}"; do wait "$n" || die "kafka format failed; see $LOG_DIR/kafka-*.log"; done
    echo "$voters" >"$STATE_DIR/kafka-voters"
    echo "$cluster_id" >"$STATE_DIR/kafka-cluster.id"
}

# The Distributed engine logs in to the other nodes as the sink's user (it must be allowed to
# insert); local development credentials from local.env.
remote_login() {
    local user password
    user=$(sed -n 's/^STREAMS_CLICKHOUSE_USER=//p' "$REPO_DIR/deploy/local/local.env")
    password=$(sed -n 's/^STREAMS_CLICKHOUSE_PASSWORD=//p' "$REPO_DIR/deploy/local/local.env")
    echo "<user>$user</user><password>$password</password>"
}

start_clickhouse_node() {
    local n=$1 CLICKHOUSE_DIR=$STATE_DIR/clickhouse-$1 etc REMOTE_LOGIN NODE_SHARD NODE_REPLICA
    local CLICKHOUSE_PORT=$((CLUSTER_CLICKHOUSE_PORT + n - 1)) CLICKHOUSE_HTTP_PORT=$((CLUSTER_CLICKHOUSE_HTTP_PORT + n - 1))
    local CLICKHOUSE_INTERSERVER_PORT=$((CLUSTER_CLICKHOUSE_INTERSERVER_PORT + n - 1))
    local CLICKHOUSE_PORT_1=$CLUSTER_CLICKHOUSE_PORT CLICKHOUSE_PORT_2=$((CLUSTER_CLICKHOUSE_PORT + 1))
    local CLICKHOUSE_PORT_3=$((CLUSTER_CLICKHOUSE_PORT + 2)) CLICKHOUSE_PORT_4=$((CLUSTER_CLICKHOUSE_PORT + 3))
    NODE_SHARD=$(printf '%02d' $(((n + 1) / 2)))
    NODE_REPLICA=replica-$n
    REMOTE_LOGIN=$(remote_login)
    etc=$CLICKHOUSE_DIR/etc
    mkdir -p "$etc" "$CLICKHOUSE_DIR"/{data,tmp,user_files,format_schemas}
    render "$TEMPLATES/clickhouse-config.xml" "$etc/config.xml"
    rm -rf "$etc/config.d"
    mkdir -p "$etc/config.d"
    cp "$REPO_DIR"/deploy/clickhouse/config.d/*.xml "$etc/config.d/"
    render "$TEMPLATES/cluster-clickhouse.xml" "$etc/config.d/cluster.xml"
    cp "$REPO_DIR/deploy/clickhouse/users.xml" "$etc/users.xml"
    # 18.16 exits at start-up when it has Replicated tables and ZooKeeper does not answer.
    wait_ready zookeeper || die "clickhouse-$n needs ZooKeeper"
    start_bg "clickhouse-$n" "$CLICKHOUSE_DIR" clickhouse-server "--config-file=$etc/config.xml"
}

# ClickHouse nodes, then Kafka nodes, then ZooKeeper; the nodes of a group stop together: a
# broker stopped last and alone waits for a controller quorum that is gone, until it is killed.
stop_services() {
    local group name pid pids failed=0
    for group in clickhouse kafka zookeeper; do
        pids=()
        for name in "${NAMES[@]}"; do
            [[ $name == "$group"* ]] || continue
            stop_service "$name" &
            pids+=("$!")
        done
        for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    done
    ((failed == 0)) || die "not every service stopped"
}

# ---------------------------------------------------------------------------------------------
# env

cmd_env() {
    local n brokers=()
    for n in "${KAFKA_NODES[@]}"; do brokers+=("127.0.0.1:$((CLUSTER_KAFKA_PORT + n - 1))"); done
    cat <<EOF
export STREAMS_KAFKA_BOOTSTRAP_SERVERS=$(IFS=,; echo "${brokers[*]}")
export STREAMS_TOPIC_REPLICATION=3
export STREAMS_TOPIC_MIN_INSYNC_REPLICAS=2
export STREAMS_CLICKHOUSE_HOST=127.0.0.1
export STREAMS_CLICKHOUSE_PORT=$CLUSTER_CLICKHOUSE_PORT
export STREAMS_CLICKHOUSE_CLUSTER=$CLUSTER_NAME
export STREAMS_LOCAL_CLICKHOUSE_HTTP_URL=http://127.0.0.1:$CLUSTER_CLICKHOUSE_HTTP_PORT
EOF
    print_local_credentials
}
