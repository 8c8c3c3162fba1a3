#!/usr/bin/env bash
# Starts a throwaway identity-graph cluster on loopback (deploy/README.md, "Try it on one machine"):
# PostgreSQL and three `identity-graph serve --cluster` servers, each with its own data directory and
# ports, all under one temporary directory. Ctrl-C (SIGINT) or SIGTERM stops everything it started and
# removes that directory. With --ha, PostgreSQL is a primary and a synchronous standby under Patroni,
# with etcd as Patroni's store and haproxy in front of the primary; the servers connect through haproxy.
#
#   deploy/local-cluster.sh [--ha] [--keep] [--lease-ttl SECONDS] [--wait SECONDS] [-- SERVE-FLAGS...]
#
#   --ha                Patroni (primary + synchronous standby), etcd and haproxy; installs what is missing
#                       with apt-get (as root, or through sudo).
#   --keep              Keep the temporary directory (data, logs, configuration) after stopping.
#   --lease-ttl S       Passed to every server (default: the server's, 5 s).
#   --wait S            Deadline for each start-up step (default 120 s).
#   -- FLAGS            Any further `serve` flags, given to all three servers (--auth-tokens FILE, ...).
#
# The binary: $IDENTITY_GRAPH_BINARY when set (nothing is built), else `swift build -c release --product
# identity-graph` in the checkout (SwiftPM rebuilds only what changed) and .build/release/identity-graph.
# Ports are free loopback ports picked at start; the script prints them, and writes them as shell
# variables to DIR/cluster.env for scripts (deploy/ha-check.py reads it). Exit status: 0 after a clean
# stop on Ctrl-C/SIGTERM, 1 when a start-up step failed or a process had to be killed on the way out.
set -euo pipefail

# Bash cannot trap a signal that was ignored when it started, and inherits blocked signals: a shell
# without job control starts `cmd &` with SIGINT ignored, and some programs start children with signals
# blocked. Started either way, the script runs itself again with SIGINT and SIGTERM reset and unblocked.
signal_mask() { sed -n "s/^$1:[[:space:]]*//p" /proc/$$/status; }
if [ -z "${LOCAL_CLUSTER_SIGNALS_RESET:-}" ] \
    && (( (0x$(signal_mask SigIgn) | 0x$(signal_mask SigBlk)) & 0x4002 )); then
    LOCAL_CLUSTER_SIGNALS_RESET=1 exec env --default-signal=INT,TERM "$0" "$@"
fi

ha=false
keep=false
lease_ttl=""
wait_seconds=120
serve_extra=()
while [ $# -gt 0 ]; do
    case "$1" in
        --ha) ha=true ;;
        --keep) keep=true ;;
        --lease-ttl) lease_ttl="${2:?--lease-ttl needs a number of seconds}"; shift ;;
        --wait) wait_seconds="${2:?--wait needs a number of seconds}"; shift ;;
        --) shift; serve_extra=("$@"); break ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "local-cluster: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "local-cluster: $*"; }
fail() { echo "local-cluster: error: $*" >&2; exit 1; }

root="$(cd "$(dirname "$0")/.." && pwd)"
pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1 || true)"
[ -n "$pg_bin" ] && [ -x "$pg_bin/postgres" ] \
    || fail "PostgreSQL is not installed: run .ci/setup (or apt-get install postgresql)"
command -v curl >/dev/null || fail "curl is needed to check the servers: apt-get install curl"

# --ha needs Patroni, etcd and haproxy (Debian: patroni, etcd-server, etcd-client, haproxy).
if $ha; then
    missing=()
    command -v patroni >/dev/null || missing+=(patroni)
    command -v etcd >/dev/null || missing+=(etcd-server)
    command -v etcdctl >/dev/null || missing+=(etcd-client)
    command -v haproxy >/dev/null || missing+=(haproxy)
    if [ ${#missing[@]} -gt 0 ]; then
        install=(apt-get install -y --no-install-recommends "${missing[@]}")
        say "installing ${missing[*]} ..."
        if [ "$(id -u)" -eq 0 ]; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null \
                || fail "could not install ${missing[*]}: run ${install[*]}"
        elif command -v sudo >/dev/null; then
            sudo apt-get update -qq && sudo env DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null \
                || fail "could not install ${missing[*]}: run sudo ${install[*]}"
        else
            fail "--ha needs ${missing[*]}: as root, run apt-get update && ${install[*]}"
        fi
    fi
    # Debian starts the packaged services on install; this cluster runs its own on other ports.
fi

if [ -n "${IDENTITY_GRAPH_BINARY:-}" ]; then
    binary="$(realpath "$IDENTITY_GRAPH_BINARY")"
    [ -x "$binary" ] || fail "IDENTITY_GRAPH_BINARY=$IDENTITY_GRAPH_BINARY is not an executable"
else
    command -v swift >/dev/null || fail "swift is not on PATH: install Swift 6.2, or set IDENTITY_GRAPH_BINARY"
    say "building: swift build -c release --product identity-graph (set IDENTITY_GRAPH_BINARY to skip)"
    (cd "$root" && swift build -c release --product identity-graph) || fail "the build failed"
    binary="$root/.build/release/identity-graph"
fi

# PostgreSQL refuses to run as root: as root, its programs run as the `postgres` user. setpriv executes
# the program in place (runuser forks and waits), so that $! is the program itself.
as_postgres=()
if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || fail "running as root needs the postgres user (apt-get install postgresql)"
    as_postgres=(setpriv --reuid=postgres --regid=postgres --init-groups --)
fi

dir="$(mktemp -d "${TMPDIR:-/tmp}/identity-graph-local-cluster.XXXXXX")"
chmod 0755 "$dir"   # the postgres user must reach its folders inside
cd "$dir"

# Processes this script started, stopped in reverse order: "name pid".
started=()
sleeper=""
state=starting

# A process is running when it exists and is not a zombie (a dead child not yet reaped).
running() {
    local stat
    stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
    stat="${stat##*) }"
    [ "${stat%% *}" != Z ]
}

# stop_all SIGNAL SECONDS NAME PID [NAME PID ...]: signals them, waits for all to exit, kills the rest.
stop_all() {
    local signal="$1" seconds="$2" deadline clean=0 i
    shift 2
    local pairs=("$@")
    for ((i = 0; i < ${#pairs[@]}; i += 2)); do
        running "${pairs[i + 1]}" && kill "-$signal" "${pairs[i + 1]}" 2>/dev/null || true
    done
    deadline=$((SECONDS + seconds))
    for ((i = 0; i < ${#pairs[@]}; i += 2)); do
        while running "${pairs[i + 1]}" && [ $SECONDS -lt $deadline ]; do sleep 0.1; done
        if running "${pairs[i + 1]}"; then
            echo "local-cluster: ${pairs[i]} (pid ${pairs[i + 1]}) did not exit within ${seconds} s of SIG$signal;" \
                "killing it" >&2
            kill -KILL "${pairs[i + 1]}" 2>/dev/null || true
            clean=1
        fi
        wait "${pairs[i + 1]}" 2>/dev/null || true
    done
    return $clean
}

postgres_pid() { head -1 "$1/postmaster.pid" 2>/dev/null || true; }

cleanup() {
    local status=$?
    trap '' INT TERM
    trap - EXIT
    [ "$state" = stopping ] && return
    [ "$state" = running ] && status=0
    state=stopping
    [ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null || true
    echo
    say "stopping ..."
    local servers=() others=() i name pid
    for ((i = ${#started[@]} - 1; i >= 0; i--)); do
        read -r name pid <<<"${started[i]}"
        case "$name" in n[0-9]*) servers+=("$name" "$pid") ;; *) others+=("$name" "$pid") ;; esac
    done
    # A server started again by hand (DIR/nX.command) is stopped too: its store's writer.lock holds its pid.
    for name in n1 n2 n3; do
        pid="$(tr -d '[:space:]' <"$dir/$name/writer.lock" 2>/dev/null || true)"
        if [ -n "$pid" ] && running "$pid" && ! printf ' %s ' "${servers[@]}" | grep -q " $pid "; then
            servers+=("$name (started again)" "$pid")
        fi
    done
    # The servers first (they drain and flush), then haproxy and Patroni, then etcd.
    [ ${#servers[@]} -gt 0 ] && { stop_all TERM 60 "${servers[@]}" || status=1; }
    for ((i = 0; i < ${#others[@]}; i += 2)); do
        case "${others[i]}" in
            haproxy|patroni-*) stop_all TERM 60 "${others[i]}" "${others[i + 1]}" || status=1 ;;
        esac
    done
    for ((i = 0; i < ${#others[@]}; i += 2)); do
        [ "${others[i]}" = etcd ] && { stop_all TERM 30 etcd "${others[i + 1]}" || status=1; }
    done
    if [ -f "$dir/postgres/data/postmaster.pid" ]; then
        "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$dir/postgres/data" -m fast -w -t 60 stop \
            >>"$dir/postgres/pg_ctl.log" 2>&1 || status=1
    fi
    # Whatever PostgreSQL is left (a postmaster Patroni did not stop) is killed, and said so.
    for data in "$dir"/postgres/data "$dir"/pg*/data; do
        pid="$(postgres_pid "$data")"
        if [ -n "$pid" ] && running "$pid" && grep -q postgres "/proc/$pid/comm" 2>/dev/null; then
            echo "local-cluster: PostgreSQL (pid $pid, $data) still running; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            status=1
        fi
    done
    cd /
    if $keep; then
        say "kept $dir"
    else
        rm -rf "$dir"
    fi
    if [ $status -eq 0 ]; then say "stopped"; else say "stopped (status $status)"; fi
    exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port VARIABLE: sets VARIABLE to a free loopback port below Linux's ephemeral range (32768 and up),
# not handed out before; a port that refuses a connection is free. Another program may still take it
# before its user binds it; then that user fails to start, with a message.
taken=" "
free_port() {
    local port tries=0
    while :; do
        port=$((20000 + RANDOM % 12000))
        tries=$((tries + 1))
        [ $tries -gt 200 ] && fail "found no free loopback port in 20000-31999"
        case "$taken" in *" $port "*) continue ;; esac
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            taken+="$port "
            printf -v "$1" '%s' "$port"
            return
        fi
    done
}

# wait_for WHAT SECONDS COMMAND...: runs COMMAND every 0.2 s until it succeeds; fails with WHAT at the deadline.
wait_for() {
    local what="$1" seconds="$2" deadline
    shift 2
    deadline=$((SECONDS + seconds))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && fail "$what did not happen within $seconds s"
        sleep 0.2
    done
}

# check_alive NAME PID LOG: fails with the end of LOG when the process has exited.
check_alive() {
    running "$2" && return 0
    echo "local-cluster: $1 (pid $2) exited; the end of $3:" >&2
    tail -n 20 "$3" >&2 || true
    fail "$1 exited during start-up"
}

http_status() { curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$1" || true; }

password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
{
    echo "# identity-graph local cluster, written by deploy/local-cluster.sh (pid $$)"
    echo "SCRIPT_PID=$$"
    echo "DIR=$dir"
    echo "BINARY=$binary"
    echo "PGPASSWORD=$password"
} >"$dir/cluster.env"
say "directory $dir ($($keep && echo "kept" || echo "removed") on exit)"
say "binary $binary"

if ! $ha; then
    # One PostgreSQL: initdb into the temporary directory, password authentication over TCP.
    free_port pg_port
    mkdir -p "$dir/postgres"
    printf '%s\n' "$password" >"$dir/postgres/pwfile"
    [ ${#as_postgres[@]} -gt 0 ] && chown -R postgres "$dir/postgres"
    "${as_postgres[@]}" "$pg_bin/initdb" -D "$dir/postgres/data" -U postgres --pwfile "$dir/postgres/pwfile" \
        --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --no-sync >"$dir/postgres/initdb.log" 2>&1 \
        || { tail -n 20 "$dir/postgres/initdb.log" >&2; fail "initdb failed"; }
    # -w waits until it accepts connections, at most --wait seconds; the log is postgres/log.
    "${as_postgres[@]}" "$pg_bin/pg_ctl" -D "$dir/postgres/data" -l "$dir/postgres/log" -w -t "$wait_seconds" \
        -o "-p $pg_port -k $dir/postgres -c listen_addresses=127.0.0.1" start >"$dir/postgres/pg_ctl.log" 2>&1 \
        || { tail -n 20 "$dir/postgres/log" >&2; fail "PostgreSQL did not start on 127.0.0.1:$pg_port"; }
    pg_pid="$(postgres_pid "$dir/postgres/data")"
    cluster_port="$pg_port"
    say "PostgreSQL $(basename "$(dirname "$pg_bin")") on 127.0.0.1:$pg_port (pid $pg_pid), log $dir/postgres/log"
    {
        echo "POSTGRES_PORT=$pg_port"
        echo "POSTGRES_PID=$pg_pid"
    } >>"$dir/cluster.env"
else
    # etcd (one member: Patroni's store), two PostgreSQL under Patroni, haproxy in front of the primary.
    free_port etcd_client
    free_port etcd_peer
    mkdir -p "$dir/etcd"
    # Patroni speaks etcd's v2 API here: Debian's etcd 3.4 is built without the gRPC gateway (/v3/...)
    # that Patroni's etcd3 client needs.
    cat >"$dir/etcd/etcd.yml" <<EOF
name: etcd0
data-dir: $dir/etcd/data
listen-client-urls: http://127.0.0.1:$etcd_client
advertise-client-urls: http://127.0.0.1:$etcd_client
listen-peer-urls: http://127.0.0.1:$etcd_peer
initial-advertise-peer-urls: http://127.0.0.1:$etcd_peer
initial-cluster: etcd0=http://127.0.0.1:$etcd_peer
initial-cluster-state: new
initial-cluster-token: identity-graph-local-$$
enable-v2: true
EOF
    setsid etcd --config-file "$dir/etcd/etcd.yml" >"$dir/etcd/etcd.log" 2>&1 </dev/null &
    started+=("etcd $!")
    etcd_pid=$!
    wait_for "etcd answering on 127.0.0.1:$etcd_client" "$wait_seconds" \
        etcdctl --endpoints "http://127.0.0.1:$etcd_client" endpoint health
    check_alive etcd "$etcd_pid" "$dir/etcd/etcd.log"
    say "etcd on 127.0.0.1:$etcd_client (pid $etcd_pid), log $dir/etcd/etcd.log"

    replication_password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
    for member in 1 2; do
        free_port pg_port
        free_port rest_port
        home="$dir/pg$member"
        mkdir -p "$home"
        # Fast failover, nothing acknowledged lost: synchronous replication, and a primary whose
        # PostgreSQL crashed fails over at once instead of being restarted (primary_start_timeout 0).
        # ttl 10 s, loop 1 s: Patroni's rule loop_wait + 2 × retry_timeout <= ttl holds.
        cat >"$home/patroni.yml" <<EOF
scope: identity-graph-local
name: pg$member
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$rest_port
  connect_address: 127.0.0.1:$rest_port
etcd:
  host: 127.0.0.1:$etcd_client
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    primary_start_timeout: 0
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        hot_standby: "on"
  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: 127.0.0.1:$pg_port
  connect_address: 127.0.0.1:$pg_port
  data_dir: $home/data
  bin_dir: $pg_bin
  pgpass: $home/pgpass
  authentication:
    superuser:
      username: postgres
      password: "$password"
    replication:
      username: replicator
      password: "$replication_password"
    rewind:
      username: postgres
      password: "$password"
  parameters:
    unix_socket_directories: "$home"
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 scram-sha-256
    - host replication replicator 127.0.0.1/32 scram-sha-256
EOF
        chmod 0600 "$home/patroni.yml"
        [ ${#as_postgres[@]} -gt 0 ] && chown -R postgres "$home"
        HOME="$home" setsid "${as_postgres[@]}" patroni "$home/patroni.yml" >"$home/patroni.log" 2>&1 </dev/null &
        started+=("patroni-pg$member $!")
        patroni_pid=$!
        # pg1 bootstraps (initdb) and becomes the primary; pg2 copies it (pg_basebackup) and must be the
        # synchronous standby before the servers start.
        if [ $member -eq 1 ]; then
            wait_for "Patroni pg1 reporting a running primary (GET /primary)" "$wait_seconds" \
                curl -sf --max-time 2 "http://127.0.0.1:$rest_port/primary"
        else
            wait_for "Patroni pg2 reporting a synchronous standby (GET /sync)" "$wait_seconds" \
                curl -sf --max-time 2 "http://127.0.0.1:$rest_port/sync"
        fi
        check_alive "patroni pg$member" "$patroni_pid" "$home/patroni.log"
        say "Patroni pg$member: PostgreSQL on 127.0.0.1:$pg_port, REST API on 127.0.0.1:$rest_port" \
            "(patroni pid $patroni_pid), log $home/patroni.log"
        {
            echo "PG${member}_PORT=$pg_port"
            echo "PG${member}_REST=$rest_port"
            echo "PG${member}_DATA=$home/data"
            echo "PG${member}_CONFIG=$home/patroni.yml"
        } >>"$dir/cluster.env"
        eval "rest_$member=$rest_port"
        eval "pgport_$member=$pg_port"
    done

    free_port haproxy_port
    # Only the member whose Patroni answers 200 on GET /primary gets connections; sessions to a member
    # that stops being the primary are cut at once, so that nobody keeps writing to a demoted node.
    cat >"$dir/haproxy.cfg" <<EOF
global
    maxconn 400
defaults
    mode tcp
    timeout connect 2s
    timeout client 30m
    timeout server 30m
    timeout check 2s
listen postgres-primary
    bind 127.0.0.1:$haproxy_port
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
    server pg1 127.0.0.1:$pgport_1 maxconn 200 check port $rest_1
    server pg2 127.0.0.1:$pgport_2 maxconn 200 check port $rest_2
EOF
    setsid haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 </dev/null &
    started+=("haproxy $!")
    haproxy_pid=$!
    # haproxy counts a server up until its first check fails: until it has marked the standby down, a
    # connection may reach the standby (read-only), so the servers start only after that.
    wait_for "haproxy marking the standby pg2 down (its log says so)" "$wait_seconds" \
        grep -q "postgres-primary/pg2 is DOWN" "$dir/haproxy.log"
    wait_for "PostgreSQL answering through haproxy on 127.0.0.1:$haproxy_port" "$wait_seconds" \
        "$pg_bin/pg_isready" -h 127.0.0.1 -p "$haproxy_port"
    check_alive haproxy "$haproxy_pid" "$dir/haproxy.log"
    cluster_port="$haproxy_port"
    say "haproxy on 127.0.0.1:$haproxy_port in front of the primary (pid $haproxy_pid), log $dir/haproxy.log"
    say "Patroni: patronictl -c $dir/pg1/patroni.yml list"
    {
        echo "HAPROXY_PORT=$haproxy_port"
        echo "ETCD_PORT=$etcd_client"
    } >>"$dir/cluster.env"
fi

# Three servers. The password comes from PGPASSWORD, so that it is not in their command lines.
url="postgres://postgres@127.0.0.1:$cluster_port/postgres?sslmode=disable"
echo "CLUSTER_URL=$url" >>"$dir/cluster.env"
export PGPASSWORD="$password"
nodes=(n1 n2 n3)
for node in "${nodes[@]}"; do
    free_port http_port
    free_port tcp_port
    command=("$binary" serve --data-dir "$dir/$node" --host 127.0.0.1 --http-port "$http_port" --tcp-port "$tcp_port"
        --cluster "$url" --node-name "$node")
    [ -n "$lease_ttl" ] && command+=(--lease-ttl "$lease_ttl")
    command+=("${serve_extra[@]}")
    setsid "${command[@]}" >"$dir/$node.log" 2>&1 </dev/null &
    started+=("$node $!")
    upper="$(echo "$node" | tr a-z A-Z)"
    {
        echo "${upper}_PID=$!"
        echo "${upper}_HTTP=$http_port"
        echo "${upper}_TCP=$tcp_port"
    } >>"$dir/cluster.env"
    printf '%q ' "${command[@]}" >"$dir/$node.command"
    say "$node (pid $!): http 127.0.0.1:$http_port, tcp 127.0.0.1:$tcp_port, data $dir/$node, log $dir/$node.log"
    eval "pid_$node=$!; http_$node=$http_port"
done

say "waiting for GET /healthz 200 on all three (at most $wait_seconds s) ..."
deadline=$((SECONDS + wait_seconds))
while :; do
    healthy=0
    for node in "${nodes[@]}"; do
        eval "pid=\$pid_$node; port=\$http_$node"
        check_alive "$node" "$pid" "$dir/$node.log"
        [ "$(http_status "http://127.0.0.1:$port/healthz")" = 200 ] && healthy=$((healthy + 1))
    done
    [ $healthy -eq 3 ] && break
    if [ $SECONDS -ge $deadline ]; then
        for node in "${nodes[@]}"; do
            eval "port=\$http_$node"
            echo "local-cluster: $node /healthz: $(curl -s --max-time 2 "http://127.0.0.1:$port/healthz")" >&2
        done
        fail "not all three servers answered /healthz 200 within $wait_seconds s (logs: $dir/n*.log)"
    fi
    sleep 0.2
done

state=running
leader="$(curl -s --max-time 2 "http://127.0.0.1:$http_n1/cluster" \
    | sed -n 's/.*"leader":{"node":"\([^"]*\)","http":"http:\/\/\([^"]*\)".*/\1 \2/p' || true)"
leader_http="${leader#* }"
leader_text="${leader% *} at $leader_http"
[ -n "$leader" ] || { leader_http="LEADER"; leader_text="not known yet"; }
# shellcheck disable=SC2154 # set through eval above
cat <<EOF
local-cluster: ready: three servers answer /healthz 200; the leader is $leader_text. Ctrl-C stops all.
  curl -s $leader_http/cluster
  curl -s -X POST $leader_http/identify -H 'Content-Type: application/json' \\
       -d '{"email":"lorraine@hillvalley.edu","phoneNumber":"123456"}'
  curl -s '127.0.0.1:$http_n2/profiles?email=lorraine@hillvalley.edu'    # any server answers reads
  Any server takes changes (a follower relays them to the leader that GET /cluster names) and reads.
  PostgreSQL: PGPASSWORD=$password psql -h 127.0.0.1 -p $cluster_port -U postgres
  Ports and pids: $dir/cluster.env. To start n1 again after stopping it:
    (. $dir/cluster.env && export PGPASSWORD && eval "\$(cat $dir/n1.command)" >>$dir/n1.log 2>&1 &)
EOF

# Runs until SIGINT or SIGTERM; says so once when a server exits by itself (it is not restarted).
reported=" "
while :; do
    sleep 1 &
    sleeper=$!
    wait "$sleeper" || true
    for node in "${nodes[@]}"; do
        eval "pid=\$pid_$node"
        if ! running "$pid"; then
            case "$reported" in *" $node "*) ;; *)
                say "$node (pid $pid) has exited; see $dir/$node.log"
                reported+="$node "
            esac
        fi
    done
done
