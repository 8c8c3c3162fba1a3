#!/usr/bin/env bash
# Builds release, generates the workload, runs every measurement and prints one table.
# Usage: benchmarks/run.sh [--quick] [--micro]
#   --quick  smaller sizes (100k-request workload, stores of 100k and 1M contacts) to try the script
#   --micro  also run the ordo-one/benchmark micro-benchmarks of the engine
# Exits non-zero if any run failed. Results go to benchmarks/.results/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

quick=0
micro=0
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        --micro) micro=1 ;;
        *) echo "usage: benchmarks/run.sh [--quick] [--micro]" >&2; exit 2 ;;
    esac
done
if [ $quick -eq 1 ]; then
    requests=100000; small=100000; large=1000000
else
    requests=1000000; small=1000000; large=10000000
fi

.ci/setup
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v curl >/dev/null 2>&1 || missing+=(curl)
[ -f /usr/include/jemalloc/jemalloc.h ] || missing+=(libjemalloc-dev)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "benchmarks need: ${missing[*]} (apt-get install ${missing[*]})" >&2
        exit 1
    fi
fi

echo "== building release" >&2
swift build -c release --product identity-graph >&2
(cd benchmarks && for product in workload loadgen populate engine-throughput; do
    swift build -c release --product "$product" >&2
done)
server="$root/.build/release/identity-graph"
bin="$root/benchmarks/.build/release"
results="$root/benchmarks/.results"
work=$(mktemp -d /tmp/identity-graph-bench.XXXXXX)
mkdir -p "$results" data/generated
pids=()
cleanup() {
    for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

workload=data/generated/workload.ndjson
echo "== generating $requests requests" >&2
"$bin/workload" --requests "$requests" --seed 1 --out "$workload" 2> "$results/workload-mix.txt"
cat "$results/workload-mix.txt" >&2

rows=()
failed=0
row() { rows+=("$1|$2|$3|$4"); }

# Starts a server on store $1; sets http, tcp, pid, and ready_ms: milliseconds until healthz answered.
# Each server writes its own ports file, so a previous server's lines can never be read; every wait
# has a deadline (120 s: a 10M-contact store takes seconds to load) and fails with a message.
start_server() {
    local started=$(date +%s%N)
    local ports="$work/ports.$RANDOM$RANDOM"
    local deadline=$(( $(date +%s) + 120 ))
    "$server" serve --data-dir "$1" --http-port 0 --tcp-port 0 --log-level error > "$ports" 2> "$work/server.log" &
    pid=$!
    pids+=("$pid")
    until grep -q "tcp listening" "$ports" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "the server on $1 exited before listening:" >&2; cat "$work/server.log" >&2; return 1; }
        [ "$(date +%s)" -lt "$deadline" ] || { echo "the server on $1 did not listen within 120 s" >&2; return 1; }
        sleep 0.005
    done
    http=$(sed -n 's/^http listening on .*://p' "$ports")
    tcp=$(sed -n 's/^tcp listening on .*://p' "$ports")
    if [ -z "$http" ] || [ -z "$tcp" ]; then
        echo "could not read the server's ports from: $(cat "$ports")" >&2
        return 1
    fi
    until curl -sf --max-time 5 "http://127.0.0.1:$http/healthz" >/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "the server on $1 did not answer /healthz within 120 s" >&2; return 1; }
        sleep 0.005
    done
    ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
}
# Stops the server with SIGTERM; one that has not exited after 60 s is killed, and the run fails.
stop_server() {
    kill "$pid" 2>/dev/null || true
    local deadline=$(( $(date +%s) + 60 ))
    while kill -0 "$pid" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "the server did not stop within 60 s of SIGTERM; killing it" >&2
            kill -9 "$pid" 2>/dev/null || true
            failed=1
            break
        fi
        sleep 0.05
    done
    wait "$pid" 2>/dev/null || true
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

echo "== (a) engine in-process" >&2
memory=$("$bin/engine-throughput" --mode memory --workload "$workload" --json) || failed=1
row "engine identify, in memory, responses built" "$(echo "$memory" | json_field "['perSecond']") /s" ">= 1,000,000 /s" \
    "$(echo "$memory" | python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['perSecond']/1e6:.2f}\")")"
# The blocklist's cost: runs with and without the 100-rule sample list (20 regexes), alternated, so
# both see the same machine; the row is the median of the per-pair ratios.
ratios=()
for round in 1 2 3; do
    plain=$("$bin/engine-throughput" --mode memory --workload "$workload" --json | json_field "['perSecond']") || failed=1
    guarded=$("$bin/engine-throughput" --mode memory --workload "$workload" --blocklist data/blocklist-100.txt --json \
        | json_field "['perSecond']") || failed=1
    ratios+=("$(python3 -c "print(f'{$guarded/$plain:.3f}')")")
done
blocklist_ratio=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 2p)
row "engine identify, in memory, 100-rule blocklist (20 regexes)" "${blocklist_ratio} x without (runs: ${ratios[*]})" \
    ">= 0.95 x without" "$(python3 -c "print(f'{$blocklist_ratio/0.95:.2f}')")"
durable=$("$bin/engine-throughput" --mode durable --workload "$workload" --requests $((requests / 5)) --in-flight 512 --json) || failed=1
row "engine identify, durable (group commit)" "$(echo "$durable" | json_field "['perSecond']") /s" ">= 300,000 /s" \
    "$(echo "$durable" | python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['perSecond']/3e5:.2f}\")")"

echo "== (b) line protocol" >&2
start_server "$work/tcp-store"
"$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --workload "$workload" --json > "$results/tcp-first-pass.json" || failed=1
"$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --workload "$workload" --json > "$results/tcp-pipelined.json" || failed=1
"$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 1 --requests $((requests / 5)) --workload "$workload" --json > "$results/tcp-unpipelined.json" || failed=1
stop_server
pipelined=$(json_field "['throughput']" < "$results/tcp-pipelined.json")
row "TCP, 8 connections x 64 pipelined, durable" "$(printf '%.0f' "$pipelined") /s" ">= 200,000 /s" \
    "$(python3 -c "print(f'{$pipelined/2e5:.2f}')")"
p99=$(json_field "['latencyMicros']['p99']" < "$results/tcp-unpipelined.json")
row "TCP, 8 connections, 1 in flight: p99" "$p99 us" "<= 1,000 us" "$(python3 -c "print(f'{1000/max($p99,1):.2f}')")"

echo "== (c) HTTP" >&2
start_server "$work/http-store"
"$bin/loadgen" --protocol http --port "$http" --connections 8 --workload "$workload" --requests $((requests / 5)) --json > "$results/http-loadgen.json" || failed=1
WORKLOAD="$workload" wrk -t2 -c64 -d10s -s benchmarks/wrk/identify.lua "http://127.0.0.1:$http/identify" > "$results/wrk-identify.txt" || failed=1
wrk -t2 -c64 -d10s "http://127.0.0.1:$http/healthz" > "$results/wrk-healthz.txt" || failed=1
stop_server
identify_rate=$(awk '/Requests\/sec/ {print $2}' "$results/wrk-identify.txt")
healthz_rate=$(awk '/Requests\/sec/ {print $2}' "$results/wrk-healthz.txt")
if grep -q "Non-2xx" "$results/wrk-identify.txt"; then failed=1; fi
row "HTTP identify with wrk (2 threads, 64 conns)" "$(printf '%.0f' "$identify_rate") /s vs healthz $(printf '%.0f' "$healthz_rate") /s" \
    ">= 0.85 x healthz" "$(python3 -c "print(f'{$identify_rate/$healthz_rate/0.85:.2f}')")"
http_rate=$(json_field "['throughput']" < "$results/http-loadgen.json")
row "HTTP identify with loadgen (8 conns, keep-alive)" "$(printf '%.0f' "$http_rate") /s" "(reference)" "-"

echo "== (d, e) memory, disk and restart" >&2
start_server "$work/empty-store"
baseline_ms=$ready_ms
baseline=$(rss_kb "$pid")
stop_server
for size in $small $large; do
    "$bin/populate" --data-dir "$work/store-$size" --contacts "$size" >&2 || failed=1
    start_server "$work/store-$size"
    rss=$(rss_kb "$pid")
    stop_server
    disk=$(stat -c %s "$work/store-$size/data.mdb")
    per_contact=$(( (rss - baseline) * 1024 / size ))
    row "memory per contact at $size contacts" "$per_contact B (RSS $((rss / 1024)) MiB, empty $((baseline / 1024)) MiB)" \
        "<= 200 B" "$(python3 -c "print(f'{200/$per_contact:.2f}')")"
    row "disk per contact at $size contacts" "$(( disk / size )) B" "(reference)" "-"
    row "restart with $size contacts (start to healthz 200)" "$ready_ms ms (empty store $baseline_ms ms)" "<= 5,000 ms at 10M" \
        "$(python3 -c "print(f'{5000/$ready_ms:.2f}')")"
    rm -rf "$work/store-$size"
done

if [ $micro -eq 1 ]; then
    echo "== micro-benchmarks" >&2
    (cd benchmarks && swift package --disable-sandbox benchmark --target EngineBenchmarks) | tee "$results/micro.txt" >&2 || failed=1
fi

{
    echo "| measure | measured | target | ratio (>= 1 meets it) |"
    echo "|---|---|---|---|"
    for entry in "${rows[@]}"; do
        IFS='|' read -r name value target ratio <<< "$entry"
        echo "| $name | $value | $target | $ratio |"
    done
} | tee "$results/table.md"
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ)"
if [ $failed -ne 0 ]; then
    echo "one or more runs failed; see $results" >&2
    exit 1
fi
