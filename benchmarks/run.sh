#!/usr/bin/env bash
# Builds release, generates the workload, runs the measurements and prints one table.
# Usage: benchmarks/run.sh [--quick] [--micro] [--curves [--sizes LIST]] [--soak DURATION] [--cluster] [--no-cluster]
#   (no mode)        the table: every single-server row, then the cluster rows (skip them with --no-cluster)
#   --quick          smaller sizes (100k-request workload, stores of 100k and 1M contacts) to try the script
#   --micro          also run the ordo-one/benchmark micro-benchmarks of the engine, checked against Thresholds/
#   --curves         only the curves: cost against store size (0, 1M, 10M, 50M contacts; --quick: 0, 100k, 1M),
#                    latency against connections, restart against store size; raw output in
#                    benchmarks/.results/curves/, PNGs in benchmarks/plots/ (benchmarks/plot.py)
#   --sizes LIST     with --curves: only the store-size curves, at these sizes (50M, or 0,1M,10M), each
#                    replacing that size's earlier point and keeping the others; no latency curve
#   --soak DURATION  only the soak: a steady mixed TCP and HTTP load (loadgen soak) for DURATION (90s, 30m, 1h)
#                    on a store of 1M contacts (--quick: 100k), then `check`; raw output in benchmarks/.results/soak/
#   --cluster        only the cluster rows (issue 15): 3 servers on a PostgreSQL started here, beside one
#                    single server in the same run
# Modes combine (--curves --soak 30m runs both). Every measure of the table is taken 3 times (rounds), each
# next to its floor on the same machine (the same tool on a cheaper operation, or a bare scan of the same
# store), so each row shows the ratio to its floor and the absolute figure: the median of the rounds, and
# their spread. Exits non-zero if any run failed. Results go to benchmarks/.results/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

usage() { echo "usage: benchmarks/run.sh [--quick] [--micro] [--curves [--sizes LIST]] [--soak DURATION] [--cluster] [--no-cluster]" >&2; exit 2; }
quick=0
micro=0
table=1
curves=0
soak=""
cluster=0
no_cluster=0
sizes=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --micro) micro=1 ;;
        --curves) curves=1; table=0 ;;
        --soak) [ $# -ge 2 ] || usage; soak=$2; table=0; shift ;;
        --sizes) [ $# -ge 2 ] || usage; sizes=$2; shift ;;
        --cluster) cluster=1; table=0 ;;
        --no-cluster) no_cluster=1 ;;
        *) usage ;;
    esac
    shift
done
if [ $table -eq 1 ] && [ $no_cluster -eq 0 ]; then cluster=1; fi
curve_latency=1
if [ $quick -eq 1 ]; then
    requests=100000; small=100000; large=1000000
    curve_sizes=(0 100000 1000000); soak_contacts=100000
else
    requests=1000000; small=1000000; large=10000000
    curve_sizes=(0 1000000 10000000 50000000); soak_contacts=1000000
fi
if [ -n "$sizes" ]; then
    # --sizes 50M or 0,1M,10M: only these store sizes, and no latency curve (a run that adds a point).
    read -r -a curve_sizes <<< "$(python3 -c '
import sys
scale = {"k": 1000, "K": 1000, "M": 1000000}
print(" ".join(str(int(float(v[:-1]) * scale[v[-1]]) if v[-1] in scale else int(v)) for v in sys.argv[1].split(",")))' "$sizes")" || usage
    curve_latency=0
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
pg_data=""
cleanup() {
    for pid in "${pids[@]:-}"; do [ -n "$pid" ] && kill "$pid" 2>/dev/null || true; done
    if [ -n "$pg_data" ]; then as_postgres "$pg_bin/pg_ctl" -D "$pg_data/data" -m immediate -w stop >/dev/null 2>&1 || true; rm -rf "$pg_data"; fi
    rm -rf "$work"
}
trap cleanup EXIT

workload=data/generated/workload.ndjson
echo "== generating $requests requests" >&2
"$bin/workload" --requests "$requests" --seed 1 --out "$workload" 2> "$results/workload-mix.txt"
cat "$results/workload-mix.txt" >&2

rows=()
failed=0
rounds=3
# row NAME MEASURED TARGET VERDICT
row() { rows+=("$1|$2|$3|$4"); }
# spread VALUES...: "median (min-max)" of the values, to 3 significant figures.
spread() { python3 -c 'import sys,statistics; v=sorted(float(x) for x in sys.argv[1:]); f=lambda x: f"{x:,.3g}" if x < 1000 else f"{x:,.0f}"; print(f"{f(statistics.median(v))} ({f(v[0])}-{f(v[-1])})")' "$@"; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
# verdict "MEDIAN OP TARGET": "meets" or "misses".
verdict() { python3 -c "print('meets' if $1 else 'misses')"; }
ratio() { python3 -c "print(f'{$1/$2:.3f}')"; }

# Starts a server on store $1, with any further arguments given to `serve`; sets http, tcp, pid, and
# ready_ms: milliseconds until /healthz answered 200. Each server writes its own ports file, so a previous
# server's lines can never be read; every wait has a deadline (started_deadline seconds, 120 by default:
# a large store takes a while to load) and fails with a message. Its log is $work/server.PID.log.
start_server() {
    local started=$(date +%s%N)
    local ports="$work/ports.$RANDOM$RANDOM"
    local limit=${start_deadline:-120}
    local deadline=$(( $(date +%s) + limit ))
    local store=$1
    shift
    "$server" serve --data-dir "$store" --http-port 0 --tcp-port 0 --log-level error "$@" > "$ports" 2> "$ports.log" &
    pid=$!
    pids+=("$pid")
    until grep -q "tcp listening" "$ports" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || { echo "the server on $store exited before listening:" >&2; cat "$ports.log" >&2; return 1; }
        [ "$(date +%s)" -lt "$deadline" ] || { echo "the server on $store did not listen within $limit s" >&2; return 1; }
        sleep 0.005
    done
    http=$(sed -n 's/^http listening on .*://p' "$ports")
    tcp=$(sed -n 's/^tcp listening on .*://p' "$ports")
    if [ -z "$http" ] || [ -z "$tcp" ]; then
        echo "could not read the server's ports from: $(cat "$ports")" >&2
        return 1
    fi
    until curl -sf --max-time 5 "http://127.0.0.1:$http/healthz" >/dev/null; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "the server on $store did not answer /healthz within $limit s" >&2; return 1; }
        sleep 0.005
    done
    ready_ms=$(( ($(date +%s%N) - started) / 1000000 ))
}
# Stops the server $1 (default: $pid) with SIGTERM; one that has not exited after 60 s is killed, and the
# run fails.
stop_server() {
    local target=${1:-$pid}
    kill "$target" 2>/dev/null || true
    local deadline=$(( $(date +%s) + 60 ))
    while kill -0 "$target" 2>/dev/null; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "the server did not stop within 60 s of SIGTERM; killing it" >&2
            kill -9 "$target" 2>/dev/null || true
            failed=1
            break
        fi
        sleep 0.05
    done
    wait "$target" 2>/dev/null || true
}
# Kills the server $1 (default: $pid) with SIGKILL and waits for it.
kill_server() {
    local target=${1:-$pid}
    kill -9 "$target" 2>/dev/null || true
    wait "$target" 2>/dev/null || true
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
# json_format FILE TEMPLATE: TEMPLATE (Python's str.format, as "{a[b]:,.0f} ...") filled from FILE's object.
json_format() { python3 -c 'import json,sys; print(sys.argv[2].format_map(json.load(open(sys.argv[1]))))' "$1" "$2"; }
# The median (interpolated within its bucket), in microseconds, of the observations of histogram $1 on
# the server at $http made since the buckets in file $2 were taken (the histogram counts every
# observation since the server started). `histogram_buckets NAME > FILE` takes them.
histogram_buckets() {
    curl -sf --max-time 5 "http://127.0.0.1:$http/metrics" \
        | sed -n "s/^$1_bucket{le=\"\\([^\"]*\\)\"} \\(.*\\)\$/\\1 \\2/p"
}
histogram_median_us() {
    histogram_buckets "$1" | python3 -c '
import sys
before = dict(line.split() for line in open(sys.argv[1]))
buckets = []
for line in sys.stdin:
    upper, count = line.split()
    buckets.append((float("inf") if upper == "+Inf" else float(upper), float(count) - float(before.get(upper, 0))))
total = buckets[-1][1] if buckets else 0
if total <= 0: print(0); sys.exit()
low, below = 0.0, 0.0
for upper, count in buckets:
    if count >= total / 2:
        share = (total / 2 - below) / max(count - below, 1)
        print(int((low + (upper - low) * share) * 1e6)); break
    low, below = upper, count' "$2"
}
# The machine and the build, for every result file.
machine() {
    echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- Sources Package.swift 2>/dev/null || echo ' with uncommitted changes to Sources')"
}

run_table() {
echo "== (a) engine in-process" >&2
# As the line protocol hands requests over: 64 per call, 4096 outstanding. Memory and durable alternate.
memory_rates=(); durable_rates=(); durable_ratios=(); blocklist_ratios=()
for round in $(seq $rounds); do
    memory=$("$bin/engine-throughput" --mode memory --workload "$workload" --in-flight 4096 --json | json_field "['perSecond']") || failed=1
    durable=$("$bin/engine-throughput" --mode durable --workload "$workload" --in-flight 4096 --json | json_field "['perSecond']") || failed=1
    guarded=$("$bin/engine-throughput" --mode memory --workload "$workload" --in-flight 4096 --blocklist data/blocklist-100.txt --json \
        | json_field "['perSecond']") || failed=1
    memory_rates+=("$memory"); durable_rates+=("$durable")
    durable_ratios+=("$(ratio "$durable" "$memory")"); blocklist_ratios+=("$(ratio "$guarded" "$memory")")
done
memory_median=$(median "${memory_rates[@]}")
row "engine identify, in memory, answers written" "$(spread "${memory_rates[@]}") /s" ">= 1,000,000 /s" \
    "$(verdict "$memory_median >= 1e6")"
row "engine identify, durable, group commit" "$(spread "${durable_ratios[@]}") x memory; $(spread "${durable_rates[@]}") /s" \
    ">= 0.8 x memory and >= 500,000 /s" "$(verdict "$(median "${durable_ratios[@]}") >= 0.8 and $(median "${durable_rates[@]}") >= 5e5")"
row "engine identify, in memory, 100-rule blocklist (20 regexes)" "$(spread "${blocklist_ratios[@]}") x without" \
    ">= 0.8 x without" "$(verdict "$(median "${blocklist_ratios[@]}") >= 0.8")"

echo "== (b) line protocol" >&2
pings="$work/pings.ndjson"
python3 -c "import sys; sys.stdout.write('{\"op\":\"ping\"}\n' * $requests)" > "$pings"
# The one-in-flight rounds identify values this store has not seen, a slice a round, so that their
# answers wait for commits as the bound assumes: after the pipelined rounds every value of the workload is
# stored, and identify on it writes nothing. The slices are the workload's first requests with every
# email domain and phone prefix changed: the mix of a first pass (creates, secondaries, merges, no-ops).
latency_requests=$((requests / 20))
fresh="$work/fresh.ndjson"
head -n $((latency_requests * rounds)) "$workload" | sed -e 's/@example/@fresh-example/g' -e 's/"+1555/"+1556/g' > "$fresh"
start_server "$work/tcp-store"
"$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --workload "$workload" --json > "$results/tcp-first-pass.json" || failed=1
tcp_rates=(); tcp_ratios=(); p99s=(); p99_bounds=(); p99_verdicts=()
for round in $(seq $rounds); do
    "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --workload "$pings" --json > "$results/tcp-ping-$round.json" || failed=1
    "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --workload "$workload" --json > "$results/tcp-pipelined-$round.json" || failed=1
    ping_rate=$(json_field "['throughput']" < "$results/tcp-ping-$round.json")
    identify_rate=$(json_field "['throughput']" < "$results/tcp-pipelined-$round.json")
    tcp_rates+=("$identify_rate"); tcp_ratios+=("$(ratio "$identify_rate" "$ping_rate")")
    "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 1 --requests "$latency_requests" --workload "$pings" --json > "$results/tcp-ping-latency-$round.json" || failed=1
    histogram_buckets identity_graph_commit_duration_seconds > "$work/commits-before"
    "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 1 --requests "$latency_requests" \
        --first-request $(( (round - 1) * latency_requests )) --workload "$fresh" --json > "$results/tcp-unpipelined-$round.json" || failed=1
    ping_p99=$(json_field "['latencyMicros']['p99']" < "$results/tcp-ping-latency-$round.json")
    p99=$(json_field "['latencyMicros']['p99']" < "$results/tcp-unpipelined-$round.json")
    commit=$(histogram_median_us identity_graph_commit_duration_seconds "$work/commits-before")
    bound=$(python3 -c "print(int($ping_p99 + 2 * $commit))")
    p99s+=("$p99"); p99_bounds+=("$bound")
    p99_verdicts+=("$(python3 -c "print(1 if $p99 <= $bound else 0)")")
done
stop_server
row "TCP, 8 connections x 64 pipelined, durable" "$(spread "${tcp_ratios[@]}") x ping; $(spread "${tcp_rates[@]}") /s" \
    ">= 0.6 x ping" "$(verdict "$(median "${tcp_ratios[@]}") >= 0.6")"
row "TCP, 8 connections, 1 in flight, new values: p99" "$(spread "${p99s[@]}") us; bound ping p99 + 2 x median commit: $(spread "${p99_bounds[@]}") us" \
    "<= bound in each round" "$(verdict "min([$(IFS=,; echo "${p99_verdicts[*]}")]) == 1")"

echo "== (c) HTTP" >&2
start_server "$work/http-store"
"$bin/loadgen" --protocol http --port "$http" --connections 8 --workload "$workload" --requests $((requests / 5)) --json > "$results/http-loadgen.json" || failed=1
# Warm-up, then /healthz and /identify alternated on the same server.
WORKLOAD="$workload" wrk -t2 -c64 -d3s -s benchmarks/wrk/identify.lua "http://127.0.0.1:$http/identify" > /dev/null || failed=1
wrk -t2 -c64 -d3s "http://127.0.0.1:$http/healthz" > /dev/null || failed=1
# 20,000 bodies of the workload, cycled: after the first pass every identify finds its profile and writes
# nothing, as a checkout's repeated customers do. Its warm-up pass writes them first.
cycled="$work/cycled.ndjson"
head -n 20000 "$workload" > "$cycled"
WORKLOAD="$cycled" wrk -t2 -c64 -d3s -s benchmarks/wrk/identify.lua "http://127.0.0.1:$http/identify" > /dev/null || failed=1
http_rates=(); http_ratios=(); cycled_rates=(); cycled_ratios=()
for round in $(seq $rounds); do
    wrk -t2 -c64 -d10s "http://127.0.0.1:$http/healthz" > "$results/wrk-healthz-$round.txt" || failed=1
    WORKLOAD="$workload" wrk -t2 -c64 -d10s -s benchmarks/wrk/identify.lua "http://127.0.0.1:$http/identify" > "$results/wrk-identify-$round.txt" || failed=1
    WORKLOAD="$cycled" wrk -t2 -c64 -d10s -s benchmarks/wrk/identify.lua "http://127.0.0.1:$http/identify" > "$results/wrk-cycled-$round.txt" || failed=1
    for file in identify cycled; do
        if grep -q "Non-2xx" "$results/wrk-$file-$round.txt"; then failed=1; fi
    done
    healthz_rate=$(awk '/Requests\/sec/ {print $2}' "$results/wrk-healthz-$round.txt")
    identify_rate=$(awk '/Requests\/sec/ {print $2}' "$results/wrk-identify-$round.txt")
    cycled_rate=$(awk '/Requests\/sec/ {print $2}' "$results/wrk-cycled-$round.txt")
    http_rates+=("$identify_rate"); http_ratios+=("$(ratio "$identify_rate" "$healthz_rate")")
    cycled_rates+=("$cycled_rate"); cycled_ratios+=("$(ratio "$cycled_rate" "$healthz_rate")")
done
stop_server
row "HTTP identify with wrk (2 threads, 64 conns)" "$(spread "${http_ratios[@]}") x healthz; $(spread "${http_rates[@]}") /s" \
    ">= 0.85 x healthz" "$(verdict "$(median "${http_ratios[@]}") >= 0.85")"
row "HTTP identify with wrk, 20,000 bodies cycled (writes nothing after the first pass)" \
    "$(spread "${cycled_ratios[@]}") x healthz; $(spread "${cycled_rates[@]}") /s" \
    ">= 0.85 x healthz" "$(verdict "$(median "${cycled_ratios[@]}") >= 0.85")"
http_rate=$(json_field "['throughput']" < "$results/http-loadgen.json")
row "HTTP identify with loadgen (8 conns, keep-alive)" "$(printf '%.0f' "$http_rate") /s" "(reference)" "-"

echo "== (d) import" >&2
import_rates=(); import_ratios=()
for round in $(seq $rounds); do
    rm -rf "$work/import-store"
    started=$(date +%s%N)
    "$server" import --data-dir "$work/import-store" "$workload" > /dev/null 2> "$results/import-$round.txt" || failed=1
    seconds=$(python3 -c "print(($(date +%s%N) - $started) / 1e9)")
    rate=$(python3 -c "print(int($requests / $seconds))")
    import_rates+=("$rate"); import_ratios+=("$(ratio "$rate" "${memory_rates[$((round - 1))]}")")
done
rm -rf "$work/import-store"
row "import of the workload (NDJSON, $requests records), durable at the end" \
    "$(spread "${import_ratios[@]}") x engine in memory; $(spread "${import_rates[@]}") records/s" \
    ">= 0.8 x engine in memory and >= 1,000,000 /s" \
    "$(verdict "$(median "${import_ratios[@]}") >= 0.8 and $(median "${import_rates[@]}") >= 1e6")"

echo "== (e) memory, disk, restart and export" >&2
start_server "$work/empty-store"
baseline=$(rss_kb "$pid")
stop_server
for size in $small $large; do
    "$bin/populate" --data-dir "$work/store-$size" --contacts "$size" >&2 || failed=1
    restarts=(); restart_ratios=(); per_contacts=(); export_rates=(); export_ratios=(); restore_rates=(); restore_ratios=()
    killed_restarts=()
    # A first start and clean stop, so that every round's restart after a clean stop finds a saved index.
    start_server "$work/store-$size" && stop_server || failed=1
    for round in $(seq $rounds); do
        scan=$("$bin/populate" --data-dir "$work/store-$size" --scan | json_field "['seconds']") || failed=1
        start_server "$work/store-$size"
        rss=$(rss_kb "$pid")
        stop_server
        restarts+=("$ready_ms"); restart_ratios+=("$(python3 -c "print(f'{$ready_ms / 1000 / $scan:.2f}')")")
        # After kill -9: one write first, so that the index saved at the clean stop no longer matches and
        # the next start rebuilds it from the store.
        start_server "$work/store-$size"
        curl -sf -o /dev/null -H 'Content-Type: application/json' \
            -d "{\"email\":\"restart-$round@bench.io\"}" "http://127.0.0.1:$http/identify" || failed=1
        kill_server
        start_server "$work/store-$size"
        killed_restarts+=("$ready_ms")
        stop_server
        per_contacts+=("$(( (rss - baseline) * 1024 / size ))")
        started=$(date +%s%N)
        "$server" export --data-dir "$work/store-$size" --out "$work/export.ndjson" || failed=1
        seconds=$(python3 -c "print(($(date +%s%N) - $started) / 1e9)")
        exported=$(wc -l < "$work/export.ndjson")
        export_rate=$(python3 -c "print(int($exported / $seconds))")
        export_rates+=("$export_rate")
        export_ratios+=("$(python3 -c "print(f'{$scan / $seconds:.3f}')")")
        if [ "$size" -eq 1000000 ]; then
            # Restore of that export into an empty store (every record kept, checked, one commit),
            # beside the export of the same store in the same round; then the round trip must hold.
            rm -rf "$work/restore-store"
            started=$(date +%s%N)
            "$server" import --data-dir "$work/restore-store" "$work/export.ndjson" > /dev/null 2> "$results/restore-$round.txt" || failed=1
            seconds=$(python3 -c "print(($(date +%s%N) - $started) / 1e9)")
            restore_rate=$(python3 -c "print(int($exported / $seconds))")
            restore_rates+=("$restore_rate"); restore_ratios+=("$(ratio "$restore_rate" "$export_rate")")
            if ! "$server" export --data-dir "$work/restore-store" | cmp -s - "$work/export.ndjson"; then
                echo "the restored store's export differs from the export it was restored from" >&2
                failed=1
            fi
            rm -rf "$work/restore-store"
        fi
        rm -f "$work/export.ndjson"
    done
    disk=$(stat -c %s "$work/store-$size/data.mdb")
    row "memory per contact at $size contacts (links and change feed included)" "$(spread "${per_contacts[@]}") B" \
        "<= 150 B" "$(verdict "$(median "${per_contacts[@]}") <= 150")"
    row "disk per contact at $size contacts" "$(( disk / size )) B" "(reference)" "-"
    row "restart with $size contacts (start to healthz 200)" \
        "$(spread "${restart_ratios[@]}") x bare cursor scan; $(spread "${restarts[@]}") ms" \
        "<= 3 x scan and <= 2,000 ms at 10M" \
        "$(verdict "$(median "${restart_ratios[@]}") <= 3 and ($size < 10000000 or $(median "${restarts[@]}") <= 2000)")"
    # The last round before the saved index measured 6.2 s at 10M (c2d8363): no slower than that.
    row "restart with $size contacts after a write and kill -9 (the index rebuilt)" "$(spread "${killed_restarts[@]}") ms" \
        "<= 6,200 ms at 10M" "$(verdict "$size < 10000000 or $(median "${killed_restarts[@]}") <= 6200")"
    row "export of $size contacts to NDJSON" "$(spread "${export_ratios[@]}") x bare cursor scan; $(spread "${export_rates[@]}") records/s" \
        ">= 0.5 x scan and >= 2,000,000 /s" \
        "$(verdict "$(median "${export_ratios[@]}") >= 0.5 and $(median "${export_rates[@]}") >= 2e6")"
    if [ ${#restore_rates[@]} -gt 0 ]; then
        row "restore of the NDJSON export of $size contacts into an empty store" \
            "$(spread "${restore_ratios[@]}") x export; $(spread "${restore_rates[@]}") records/s" \
            ">= 0.1 x export and >= 500,000 /s" \
            "$(verdict "$(median "${restore_ratios[@]}") >= 0.1 and $(median "${restore_rates[@]}") >= 5e5")"
    fi
    rm -rf "$work/store-$size"
done
}

# Curves (issue 17): raw CSV under benchmarks/.results/curves/, plotted by benchmarks/plot.py. Each store
# size has files of its own (size-N.csv, restart-N.csv), so that a run with --sizes adds to earlier ones.
run_curves() {
    local out="$results/curves"
    mkdir -p "$out"
    echo "sizes ${curve_sizes[*]}$([ $curve_latency -eq 1 ] && echo ' and latency'): $(machine)" >> "$out/machine.txt"
    echo "== curves: cost against store size (${curve_sizes[*]} contacts)" >&2
    df -h "$work" | tail -1 >&2
    free -g | sed -n 2p >&2
    # The RSS of a server on an empty store, which memory per contact is counted over.
    local baseline size store rss rebuilt_rss scan engine open restarts
    rm -rf "$work/empty-store"
    start_server "$work/empty-store" || { failed=1; return; }
    baseline=$(( $(rss_kb "$pid") * 1024 ))
    stop_server
    rm -rf "$work/empty-store"
    # One row per size: the engine on that store (durable, group commit, the workload added to it), the
    # server's RSS, the bare scan, and every restart (start to /healthz 200).
    for size in "${curve_sizes[@]}"; do
        store="$work/curve-store"
        rm -rf "$store"
        echo "contacts,kind,milliseconds" > "$out/restart-$size.csv"
        if [ "$size" -gt 0 ]; then
            echo "populating $size contacts (available: $(free -g | awk '/Mem/ {print $7}') GiB)" >&2
            "$bin/populate" --data-dir "$store" --contacts "$size" >&2 || { failed=1; continue; }
            scan=$("$bin/populate" --data-dir "$store" --scan | json_field "['seconds']") || failed=1
        else
            scan=0
        fi
        start_deadline=900 start_server "$store" || { failed=1; continue; }
        rss=$(( $(rss_kb "$pid") * 1024 ))
        echo "$size,first,$ready_ms" >> "$out/restart-$size.csv"
        stop_server
        # Restarts: after a clean stop (SIGTERM), then after a write and kill -9; 3 of each up to 1M, 1 above.
        restarts=3
        [ "$size" -le 1000000 ] || restarts=1
        for round in $(seq $restarts); do
            start_deadline=900 start_server "$store" || { failed=1; break; }
            echo "$size,clean,$ready_ms" >> "$out/restart-$size.csv"
            # One write first, so that the saved index no longer matches the store and the next start
            # must rebuild it, as after a crash under load.
            curl -sf --max-time 10 -H 'Content-Type: application/json' \
                -d "{\"email\":\"restart-probe-$round@example.com\"}" "http://127.0.0.1:$http/identify" >/dev/null || failed=1
            kill_server
            start_deadline=900 start_server "$store" || { failed=1; break; }
            echo "$size,kill9,$ready_ms" >> "$out/restart-$size.csv"
            # A start after kill -9 builds the index anew (no saved image): its RSS too, beside the first's.
            rebuilt_rss=$(( $(rss_kb "$pid") * 1024 ))
            stop_server
        done
        # The engine last, since it adds the workload's contacts to the store.
        engine=$("$bin/engine-throughput" --mode durable --data-dir "$store" --workload "$workload" \
            --in-flight 4096 --json) || { failed=1; continue; }
        echo "$engine" > "$out/engine-$size.json"
        open=$(json_field "['openSeconds']" <<< "$engine")
        engine=$(json_field "['perSecond']" <<< "$engine")
        local per_contact=0 rebuilt_per_contact=0
        [ "$size" -eq 0 ] || per_contact=$(( (rss - baseline) / size ))
        [ "$size" -eq 0 ] || rebuilt_per_contact=$(( (rebuilt_rss - baseline) / size ))
        local disk=0
        [ ! -f "$store/data.mdb" ] || disk=$(stat -c %s "$store/data.mdb")
        {
            echo "contacts,engine_per_second,engine_open_seconds,rss_bytes,rebuilt_rss_bytes,empty_rss_bytes,bytes_per_contact,rebuilt_bytes_per_contact,scan_seconds,disk_bytes"
            echo "$size,$engine,$open,$rss,$rebuilt_rss,$baseline,$per_contact,$rebuilt_per_contact,$scan,$disk"
        } > "$out/size-$size.csv"
        cat "$out/size-$size.csv" "$out/restart-$size.csv" >&2
        rm -rf "$store"
    done
    plots=1
    [ $curve_latency -eq 1 ] || return 0

    echo "== curves: latency against connections (durable)" >&2
    # A new durable store per transport; each point takes the next unused slice of the workload, so that
    # every point identifies mostly new values (writes, group-committed), as a first pass does.
    echo "protocol,connections,requests,throughput,p50_us,p90_us,p99_us,p999_us" > "$out/latency.csv"
    local offset=0 protocol connections count port
    for protocol in tcp http; do
        rm -rf "$work/latency-store"
        start_server "$work/latency-store" || { failed=1; continue; }
        port=$tcp
        [ "$protocol" = tcp ] || port=$http
        for connections in 1 4 16 64 256; do
            # Fewer requests where few connections make each one wait for its own commit.
            count=$(( requests / 25 ))
            [ $(( 4000 * connections * requests / 1000000 )) -ge "$count" ] || count=$(( 4000 * connections * requests / 1000000 ))
            "$bin/loadgen" --protocol "$protocol" --port "$port" --connections "$connections" --requests "$count" \
                --first-request "$offset" --workload "$workload" --json > "$out/latency-$protocol-$connections.json" || failed=1
            offset=$(( offset + count ))
            json_format "$out/latency-$protocol-$connections.json" \
                "{protocol},{connections},{requests},{throughput},{latencyMicros[p50]},{latencyMicros[p90]},{latencyMicros[p99]},{latencyMicros[p99.9]}" \
                >> "$out/latency.csv" || failed=1
        done
        stop_server
        rm -rf "$work/latency-store"
    done
    cat "$out/latency.csv" >&2
}

# The soak (issue 17): a steady mixed load for $soak on a store of $soak_contacts, one point every 10 s.
soak_rate=1000
run_soak() {
    local out="$results/soak"
    mkdir -p "$out"
    machine > "$out/machine.txt"
    echo "uptime before: $(uptime)" >> "$out/machine.txt"
    echo "== soak: $soak at $soak_rate requests/s on a store of $soak_contacts contacts" >&2
    rm -rf "$work/soak-store"
    "$bin/populate" --data-dir "$work/soak-store" --contacts "$soak_contacts" >&2 || { failed=1; return; }
    start_server "$work/soak-store" || { failed=1; return; }
    local soak_ok=1
    # 4 line-protocol and 4 HTTP connections at 125 requests/s each, and the change stream.
    "$bin/loadgen" soak --tcp-port "$tcp" --http-port "$http" --pid "$pid" --duration "$soak" --interval 10 \
        --rate "$soak_rate" --tcp-connections 4 --http-connections 4 --populated "$soak_contacts" \
        > "$out/soak.jsonl" || { failed=1; soak_ok=0; }
    local contacts_after
    contacts_after=$(curl -sf --max-time 5 "http://127.0.0.1:$http/metrics" | awk '/^identity_graph_contacts / {print $2}')
    stop_server
    echo "uptime after: $(uptime)" >> "$out/machine.txt"
    "$server" check --data-dir "$work/soak-store" > "$out/check.txt" 2>&1 || { failed=1; soak_ok=0; echo "check failed:" >&2; }
    tail -3 "$out/check.txt" >&2
    # RSS after warm-up (the first tenth of the run, at least a minute if the run is 10 minutes or more):
    # the spread of the points, and the growth the new contacts explain at the 1M figure per contact.
    python3 - "$out/soak.jsonl" "$soak_contacts" "${contacts_after:-0}" > "$out/summary.json" <<'PY' || failed=1
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
points = [l for l in lines if "summary" not in l]
summary = next((l["summary"] for l in lines if "summary" in l), {})
warm = max(1, len(points) // 10)
if len(points) >= 60: warm = max(warm, 6)
after = [p["rssBytes"] for p in points[warm:]] or [p["rssBytes"] for p in points]
low, high = min(after), max(after)
first, last = after[0], after[-1]
fds = [p["fds"] for p in points]
print(json.dumps({
    "points": len(points), "warmupPoints": warm,
    "rssAfterWarmupMin": low, "rssAfterWarmupMax": high,
    "rssMinMiB": low / 2**20, "rssMaxMiB": high / 2**20,
    "rssSpreadPercent": round((high - low) / low * 100, 2),
    "rssDriftPercent": round((last - first) / first * 100, 2),
    "contactsBefore": int(sys.argv[2]), "contactsAfter": int(float(sys.argv[3])),
    "contactsAdded": int(float(sys.argv[3])) - int(sys.argv[2]),
    "fdsMin": min(fds), "fdsMax": max(fds),
    "perSecondMedian": sorted(p["perSecond"] for p in points)[len(points) // 2],
    "p99MicrosMedian": sorted(p["p99Micros"] for p in points)[len(points) // 2],
    "p99MicrosMax": max(p["p99Micros"] for p in points),
    "summary": summary,
}, sort_keys=True))
PY
    cat "$out/summary.json" >&2
    local spread
    spread=$(json_field "['rssSpreadPercent']" < "$out/summary.json") || spread=100
    row "soak $soak, $soak_rate requests/s mixed TCP+HTTP, change stream consumed: RSS after warm-up" \
        "spread $spread %; $(json_format "$out/summary.json" "{rssMinMiB:.0f}-{rssMaxMiB:.0f} MiB, fds {fdsMin}-{fdsMax}, {contactsAdded:,} contacts added")" \
        "flat within 5 %" "$(verdict "$spread <= 5")"
    row "soak: acknowledged changes verified, change stream complete, check clean" \
        "$(json_format "$out/summary.json" "{summary[acknowledgedChanges]:,} changes, {summary[personsChecked]:,} persons read back, lost {summary[lost]}, stream gaps {summary[streamGaps]}, errors {summary[errors]}; {summary[requests]:,} requests, p99 {summary[p99Micros]:,.0f} us" || echo "no summary"); check: $(tail -1 "$out/check.txt")" \
        "nothing lost, check clean" "$(verdict "$soak_ok == 1")"
    rm -rf "$work/soak-store"
    plots=1
}
# Runs a command as the postgres user when we are root (PostgreSQL refuses to run as root).
as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
# Starts a throwaway PostgreSQL (Debian's newest) on a free loopback port, durable (fsync on, as in
# production); sets pg_bin, pg_data, pg_port, pg_url. Stopped by cleanup.
start_postgres() {
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
    [ -x "$pg_bin/postgres" ] || { echo "PostgreSQL is not installed: run .ci/setup" >&2; return 1; }
    pg_data=$(mktemp -d /tmp/identity-graph-bench-pg.XXXXXX)
    echo "bench-secret" > "$pg_data/pwfile"
    [ "$(id -u)" -ne 0 ] || chown -R postgres "$pg_data"
    as_postgres "$pg_bin/initdb" -D "$pg_data/data" -U postgres --pwfile "$pg_data/pwfile" \
        --auth-host=scram-sha-256 --auth-local=trust -E UTF8 > "$pg_data/initdb.log" 2>&1 \
        || { cat "$pg_data/initdb.log" >&2; return 1; }
    pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    as_postgres "$pg_bin/pg_ctl" -D "$pg_data/data" -l "$pg_data/log" -w -t 60 start \
        -o "-p $pg_port -k $pg_data -c listen_addresses=127.0.0.1 -c max_connections=100" >/dev/null \
        || { cat "$pg_data/log" >&2; return 1; }
    pg_url="postgres://postgres:bench-secret@127.0.0.1:$pg_port/postgres?sslmode=disable"
}
psql_run() { PGOPTIONS="-c client_min_messages=warning" as_postgres "$pg_bin/psql" -h "$pg_data" -p "$pg_port" -U postgres -qAt -c "$1"; }

# The index of the node whose GET /cluster says leader, within 60 s.
find_leader() {
    local deadline=$(( $(date +%s) + 60 )) i
    while [ "$(date +%s)" -lt "$deadline" ]; do
        for i in "${!node_http[@]}"; do
            if curl -sf --max-time 2 "http://127.0.0.1:${node_http[$i]}/cluster" 2>/dev/null | grep -q '"role":"leader"'; then
                echo "$i"; return 0
            fi
        done
        sleep 0.05
    done
    echo "no leader within 60 s" >&2
    return 1
}
# Starts node $1 of the cluster (its store and name are fixed by the index).
# (A caller may name its own cluster: node_prefix for the stores and names, node_schema for the schema.)
start_node() {
    start_deadline=${start_deadline:-120} start_server "$work/${node_prefix:-node}-$1" --cluster "$pg_url" \
        ${node_schema:+--cluster-schema "$node_schema"} --node-name "${node_prefix:-n}$1" $checkpoint_flag
    node_pid[$1]=$pid; node_http[$1]=$http; node_tcp[$1]=$tcp
}

# Cluster rows (issue 15): one single server, then 3 servers on one PostgreSQL, same slices of the workload.
run_cluster() {
    local out="$results/cluster"
    mkdir -p "$out"
    machine > "$out/machine.txt"
    echo "== cluster: PostgreSQL, one single server, then 3 servers" >&2
    start_postgres || { failed=1; return; }
    # Checkpoints every $small events, for the join row, where the server has them.
    checkpoint_flag=""
    # (The help is read whole first: grep -q would end the pipe early, and pipefail count that a failure.)
    local help
    help=$("$server" serve --help 2>&1 || true)
    case "$help" in *--checkpoint-every*) checkpoint_flag="--checkpoint-every=$small" ;; esac
    # Slices of the workload: pipelined rounds, then one-in-flight rounds, then the steady load, so that
    # every run identifies mostly new values (writes) on both the single server and the leader.
    local slice=$(( requests / 8 )) latency_slice=$(( requests / 40 ))
    local single_rates=() single_p99s=() leader_rates=() leader_p99s=() leader_ratios=() leader_bounds=() leader_verdicts=()
    local round offset
    start_server "$work/single-store" || { failed=1; return; }
    for round in $(seq $rounds); do
        "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --requests "$slice" \
            --first-request $(( (round - 1) * slice )) --workload "$workload" --json > "$out/single-pipelined-$round.json" || failed=1
        single_rates+=("$(json_field "['throughput']" < "$out/single-pipelined-$round.json")")
        "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 1 --requests "$latency_slice" \
            --first-request $(( rounds * slice + (round - 1) * latency_slice )) --workload "$workload" --json \
            > "$out/single-unpipelined-$round.json" || failed=1
        single_p99s+=("$(json_field "['latencyMicros']['p99']" < "$out/single-unpipelined-$round.json")")
    done
    stop_server

    # For reference, the leader with no follower on this machine (as a deployment runs them, on machines of
    # their own): one cluster server alone on a schema of its own and a new store, the single server's
    # slices, so that both start from nothing and identify the same requests.
    local alone_rates=() alone_ratios=()
    start_server "$work/alone-store" --cluster "$pg_url" --cluster-schema alone_bench --node-name alone \
        || { failed=1; return; }
    for round in $(seq $rounds); do
        "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --requests "$slice" \
            --first-request $(( (round - 1) * slice )) --workload "$workload" --json > "$out/alone-pipelined-$round.json" || failed=1
        alone_rates+=("$(json_field "['throughput']" < "$out/alone-pipelined-$round.json")")
        alone_ratios+=("$(ratio "${alone_rates[-1]}" "${single_rates[$((round - 1))]}")")
    done
    stop_server

    node_pid=(); node_http=(); node_tcp=()
    local i
    for i in 0 1 2; do start_node "$i" || { failed=1; return; }; done
    local leader
    leader=$(find_leader) || { failed=1; return; }
    http=${node_http[$leader]}
    # The median PostgreSQL append: from the server's histogram if it has one, else pgbench timing the
    # leader's fenced append statement on a scratch copy of the tables.
    local append_metric
    append_metric=$(curl -sf --max-time 5 "http://127.0.0.1:$http/metrics" \
        | sed -n 's/^\(identity_graph_cluster_append[a-z_]*\)_bucket{.*/\1/p' | head -1)
    for round in $(seq $rounds); do
        "$bin/loadgen" --protocol tcp --port "${node_tcp[$leader]}" --connections 8 --pipeline 64 --requests "$slice" \
            --first-request $(( (round - 1) * slice )) --workload "$workload" --json > "$out/leader-pipelined-$round.json" || failed=1
        leader_rates+=("$(json_field "['throughput']" < "$out/leader-pipelined-$round.json")")
        leader_ratios+=("$(ratio "${leader_rates[-1]}" "${single_rates[$((round - 1))]}")")
        [ -z "$append_metric" ] || histogram_buckets "$append_metric" > "$work/append-before"
        "$bin/loadgen" --protocol tcp --port "${node_tcp[$leader]}" --connections 8 --pipeline 1 --requests "$latency_slice" \
            --first-request $(( rounds * slice + (round - 1) * latency_slice )) --workload "$workload" --json \
            > "$out/leader-unpipelined-$round.json" || failed=1
        leader_p99s+=("$(json_field "['latencyMicros']['p99']" < "$out/leader-unpipelined-$round.json")")
        local append_us
        if [ -n "$append_metric" ]; then
            append_us=$(histogram_median_us "$append_metric" "$work/append-before")
            append_source="the leader's $append_metric histogram"
        else
            append_us=$(pgbench_append_median_us) || { failed=1; append_us=0; }
            append_source="pgbench timing the leader's fenced append of a 512-byte batch (the server has no append histogram)"
        fi
        leader_bounds+=("$(python3 -c "print(int(${single_p99s[$((round - 1))]} + 2 * $append_us))")")
        leader_verdicts+=("$(python3 -c "print(1 if ${leader_p99s[-1]} <= ${leader_bounds[-1]} else 0)")")
    done
    row "cluster leader alone (no follower on this machine), TCP 8 x 64 pipelined, durable in PostgreSQL" \
        "$(spread "${alone_ratios[@]}") x single server; $(spread "${alone_rates[@]}") /s" \
        "(reference for the row below)" "-"
    row "cluster leader, TCP 8 x 64 pipelined, durable in PostgreSQL" \
        "$(spread "${leader_ratios[@]}") x single server; $(spread "${leader_rates[@]}") /s (single $(spread "${single_rates[@]}") /s)" \
        ">= 0.5 x single server" "$(verdict "$(median "${leader_ratios[@]}") >= 0.5")"
    # The issue counts medians of 3 rounds: the median p99 against the median of the rounds' bounds. The
    # rounds within their own bound are shown beside it.
    local within
    within=$(python3 -c "print(sum([$(IFS=,; echo "${leader_verdicts[*]}")]))")
    row "cluster leader, TCP 8 connections, 1 in flight: p99" \
        "$(spread "${leader_p99s[@]}") us; bound single p99 + 2 x median append: $(spread "${leader_bounds[@]}") us, $within of $rounds rounds within their own (single p99 $(spread "${single_p99s[@]}") us; append from $append_source)" \
        "median <= median bound" "$(verdict "$(median "${leader_p99s[@]}") <= $(median "${leader_bounds[@]}")")"

    # Follower apply lag under a steady load at half the leader's maximum, for 10 s: both servers'
    # GET /cluster appliedSeq polled in turn; the lag of a seq is the time from the first poll that saw
    # it on the leader to the first that saw it on the follower.
    local follower=$(( (leader + 1) % 3 ))
    local half
    half=$(python3 -c "print(int($(median "${leader_rates[@]}") / 2))")
    local steady_requests=$(( half * 10 ))
    "$bin/loadgen" --protocol tcp --port "${node_tcp[$leader]}" --connections 8 --pipeline 64 --rate "$half" \
        --requests "$steady_requests" --first-request $(( rounds * (slice + latency_slice) )) --workload "$workload" \
        --json > "$out/steady-load.json" &
    local load_pid=$!
    python3 - "${node_http[$leader]}" "${node_http[$follower]}" "$load_pid" > "$out/lag.json" <<'PY' || failed=1
import http.client, json, os, sys, time
leader, follower, load = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=5), \
    http.client.HTTPConnection("127.0.0.1", int(sys.argv[2]), timeout=5), int(sys.argv[3])
def seq(connection):
    connection.request("GET", "/cluster")
    return json.loads(connection.getresponse().read())["appliedSeq"]
seen_leader, seen_follower, polls = {}, [], 0
deadline = time.monotonic() + 120
def alive():
    try: os.kill(load, 0); return True
    except OSError: return False
top = 0
start = time.monotonic()
while alive() and time.monotonic() < deadline:
    s = seq(leader); t = time.monotonic()
    if s > top: seen_leader[s] = t; top = s
    f = seq(follower); seen_follower.append((time.monotonic(), f)); polls += 1
end = time.monotonic() + 30
while seen_follower[-1][1] < top and time.monotonic() < end:
    seen_follower.append((time.monotonic(), seq(follower))); time.sleep(0.002)
lags = []
j = 0
for s, t in sorted(seen_leader.items()):
    while j < len(seen_follower) and seen_follower[j][1] < s: j += 1
    if j == len(seen_follower): lags.append(float("inf")); continue
    lags.append(max(0.0, seen_follower[j][0] - t))
lags.sort()
pick = lambda q: lags[min(len(lags) - 1, int(q * len(lags)))] * 1000 if lags else 0
print(json.dumps({"samples": len(lags), "polls": polls,
                  "pollMs": round((seen_follower[-1][0] - start) / max(polls, 1) * 1000, 2), "p50Ms": round(pick(0.5), 2), "p99Ms": round(pick(0.99), 2),
                  "maxMs": round(lags[-1] * 1000, 2) if lags else 0, "leaderSeq": top, "followerSeq": seen_follower[-1][1]}))
PY
    wait "$load_pid" || failed=1
    local lag_p99
    lag_p99=$(json_field "['p99Ms']" < "$out/lag.json") || lag_p99=1e9
    row "cluster follower apply lag, steady load at half the leader's maximum ($half /s, 10 s)" \
        "p99 $lag_p99 ms; $(json_format "$out/lag.json" "p50 {p50Ms} ms, max {maxMs} ms over {samples} seqs, one poll of both every {pollMs} ms"); load ran $(json_format "$out/steady-load.json" "{throughput:,.0f}") /s" \
        "<= 100 ms" "$(verdict "$lag_p99 <= 100")"

    # Failover, 5 trials: kill -9 of the leader to the first identify that one of the others answers 200.
    local trial failovers=() ttl=5
    for trial in 1 2 3 4 5; do
        leader=$(find_leader) || { failed=1; break; }
        local others=()
        for i in 0 1 2; do [ "$i" -eq "$leader" ] || others+=("${node_http[$i]}"); done
        local seconds
        seconds=$(python3 - "${node_pid[$leader]}" "$trial" "${others[@]}" <<'PY'
import http.client, os, sys, time
pid, trial, ports = int(sys.argv[1]), sys.argv[2], [int(p) for p in sys.argv[3:]]
os.kill(pid, 9)
start = time.monotonic(); n = 0
while time.monotonic() - start < 120:
    for port in ports:
        n += 1
        body = '{"email":"failover-%s-%d@example.com","phoneNumber":"%s%06d"}' % (trial, n, "8" + trial, n)
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("POST", "/identify", body, {"Content-Type": "application/json"})
            if c.getresponse().status == 200:
                print(f"{time.monotonic() - start:.3f}"); sys.exit(0)
        except OSError:
            pass
    time.sleep(0.01)
sys.exit(1)
PY
        ) || { echo "failover trial $trial: no change acknowledged within 120 s" >&2; failed=1; break; }
        wait "${node_pid[$leader]}" 2>/dev/null || true
        failovers+=("$seconds")
        echo "  failover $trial: $seconds s" >&2
        start_node "$leader" || { failed=1; break; }
    done
    printf '%s\n' "${failovers[@]}" > "$out/failover.txt"
    if [ ${#failovers[@]} -gt 0 ]; then
        row "cluster failover: kill -9 of the leader to the first acknowledged change ($trial trials, lease ttl $ttl s)" \
            "$(spread "${failovers[@]}") s" "median <= ttl + 2 s" "$(verdict "$(median "${failovers[@]}") <= $ttl + 2")"
    fi
    for i in 0 1 2; do stop_server "${node_pid[$i]}"; done
    if [ -n "$checkpoint_flag" ]; then
        measure_join "$out"
    else
        row "cluster join from a checkpoint" "not measured: serve has no --checkpoint-every yet" "<= 3 x a restart from the local copy" "-"
    fi
}

# Join from a checkpoint of $small contacts (the issue's row): a cluster of two servers of its own, on a
# schema of its own (--cluster-schema join_bench; the other rows' servers are stopped by then), gets
# $small new persons through its leader, one event each, so that the checkpoint every $small events
# (--checkpoint-every) holds the whole store. Then, 3 rounds, a restart of the follower from its local
# copy (clean stop, then start to /healthz 200) beside a new server with an empty data directory (start
# to /healthz 200: the checkpoint loaded and the log after it applied).
measure_join() {
    local out=$1 schema=join_bench
    python3 -c '
import sys
for n in range(int(sys.argv[1])):
    sys.stdout.write("{\"email\":\"join-%d@example.com\",\"phoneNumber\":\"6%010d\"}\n" % (n, n))' "$small" > "$work/join.ndjson"
    # The join's two servers are the cluster now, for start_node and find_leader.
    local node_pid=() node_http=() node_tcp=() node_prefix=j node_schema=$schema i
    for i in 0 1; do start_node "$i" || { failed=1; return; }; done
    local leader
    leader=$(find_leader) || { failed=1; return; }
    "$bin/loadgen" --protocol tcp --port "${node_tcp[$leader]}" --connections 8 --pipeline 64 \
        --workload "$work/join.ndjson" --json > "$out/join-fill.json" || failed=1
    local latest deadline=$(( $(date +%s) + 600 )) checkpoint=""
    latest=$(psql_run "SELECT coalesce(max(last_seq), 0) FROM $schema.log")
    until checkpoint=$(psql_run "SELECT seq || ' ' || bytes FROM $schema.checkpoints WHERE seq >= $latest ORDER BY position DESC LIMIT 1") \
        && [ -n "$checkpoint" ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "no checkpoint of seq >= $latest within 600 s" >&2; failed=1; return; }
        sleep 1
    done
    local contacts
    contacts=$(curl -sf --max-time 5 "http://127.0.0.1:${node_http[$leader]}/metrics" \
        | sed -n 's/^identity_graph_contacts \([0-9.e+]*\)$/\1/p' | head -1)
    [ -z "$contacts" ] || contacts=$(printf '%.0f' "$contacts")
    local restarts=() joins=() ratios=() follower round
    for round in $(seq $rounds); do
        leader=$(find_leader) || { failed=1; return; }
        follower=$(( 1 - leader ))
        stop_server "${node_pid[$follower]}"
        start_node "$follower" || { failed=1; return; }
        restarts+=("$ready_ms")
        # A name never used before: a server that starts under the name of one that stopped watches it
        # for half a lease first (a restart pays that; a new server does not).
        rm -rf "$work/join-$round"
        start_deadline=600 start_server "$work/join-$round" --cluster "$pg_url" --cluster-schema "$schema" \
            --node-name "join-$round" $checkpoint_flag || { failed=1; return; }
        joins+=("$ready_ms")
        ratios+=("$(ratio "${joins[-1]}" "${restarts[-1]}")")
        stop_server
        rm -rf "$work/join-$round"
    done
    for i in 0 1; do stop_server "${node_pid[$i]}"; done
    printf 'restart_ms join_ms\n' > "$out/join.txt"
    for round in $(seq $rounds); do echo "${restarts[$((round - 1))]} ${joins[$((round - 1))]}" >> "$out/join.txt"; done
    local after
    after=$(psql_run "SELECT coalesce(max(last_seq), 0) FROM $schema.log")
    row "cluster join from a checkpoint (${contacts:-?} contacts, seq ${checkpoint% *}, $(( ${checkpoint#* } / 1048576 )) MiB; $(( after - ${checkpoint% *} )) events in the log after it), empty data directory, to /healthz 200" \
        "$(spread "${ratios[@]}") x a restart from the local copy; $(spread "${joins[@]}") ms (restart $(spread "${restarts[@]}") ms)" \
        "<= 3 x a restart from the local copy" "$(verdict "$(median "${ratios[@]}") <= 3")"
}

# The median, in microseconds, of 5 s of the leader's fenced append (ChangeLog.append) on a scratch
# schema: one client, a 512-byte batch, durable commits, as pgbench times each transaction.
pgbench_append_median_us() {
    psql_run "CREATE SCHEMA IF NOT EXISTS bench_append;
        CREATE TABLE IF NOT EXISTS bench_append.lease (LIKE identity_graph.lease INCLUDING ALL);
        CREATE TABLE IF NOT EXISTS bench_append.log (LIKE identity_graph.log INCLUDING ALL);
        CREATE SEQUENCE IF NOT EXISTS bench_append.position;
        INSERT INTO bench_append.lease VALUES (1, 'bench', 1, 'infinity', NULL, NULL) ON CONFLICT (id) DO NOTHING;" >/dev/null
    cat > "$pg_data/append.sql" <<'SQL'
WITH fence AS (
    SELECT epoch FROM bench_append.lease WHERE id = 1 AND epoch = 1 AND holder = 'bench' FOR SHARE
), appended AS (
    INSERT INTO bench_append.log (position, epoch, last_seq, commands)
    SELECT nextval('bench_append.position'), fence.epoch, 0, decode(repeat('ab', 512), 'hex') FROM fence
    RETURNING position
)
SELECT position FROM appended, pg_notify('bench_append_log', position::text);
SQL
    [ "$(id -u)" -ne 0 ] || chown postgres "$pg_data/append.sql"
    rm -f "$pg_data"/pgbench_log.*
    as_postgres sh -c "cd '$pg_data' && '$pg_bin/pgbench' -n -h '$pg_data' -p $pg_port -U postgres -c 1 -T 5 -f append.sql -l postgres" \
        > "$pg_data/pgbench.out" 2>&1 || { cat "$pg_data/pgbench.out" >&2; return 1; }
    cat "$pg_data"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'
}
plots=0
[ $table -eq 0 ] || run_table
[ $cluster -eq 0 ] || run_cluster
[ $curves -eq 0 ] || run_curves
[ -z "$soak" ] || run_soak

if [ $micro -eq 1 ]; then
    echo "== micro-benchmarks, checked against benchmarks/Thresholds/" >&2
    (cd benchmarks && swift package --disable-sandbox benchmark thresholds check --target EngineBenchmarks) \
        | tee "$results/micro.txt" >&2 || failed=1
fi

if [ $plots -eq 1 ]; then
    # matplotlib from PyPI in a virtual environment of its own (git-ignored, under .results/).
    if ! "$results/venv/bin/python" -c "import matplotlib" 2>/dev/null; then
        echo "== installing matplotlib into $results/venv" >&2
        python3 -m venv "$results/venv" && "$results/venv/bin/pip" install -q matplotlib >&2 || failed=1
    fi
    "$results/venv/bin/python" benchmarks/plot.py "$results" benchmarks/plots >&2 || failed=1
fi

if [ ${#rows[@]} -gt 0 ]; then
    {
        echo "| measure | measured: median (spread) of $rounds rounds | target | verdict |"
        echo "|---|---|---|---|"
        for entry in "${rows[@]}"; do
            IFS='|' read -r name value target result <<< "$entry"
            echo "| $name | $value | $target | $result |"
        done
    } | tee "$results/table.md"
    echo
fi
machine
if [ $failed -ne 0 ]; then
    echo "one or more runs failed; see $results" >&2
    exit 1
fi
