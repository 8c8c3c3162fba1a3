#!/usr/bin/env bash
# Builds release, generates the workload, runs every measurement and prints one table.
# Usage: benchmarks/run.sh [--quick] [--micro]
#   --quick  smaller sizes (100k-request workload, stores of 100k and 1M contacts) to try the script
#   --micro  also run the ordo-one/benchmark micro-benchmarks of the engine, checked against Thresholds/
# Every measure is taken 3 times (rounds), each next to its floor on the same machine (the same tool on a
# cheaper operation, or a bare scan of the same store), so each row shows the ratio to its floor and the
# absolute figure: the median of the rounds, and their spread. Exits non-zero if any run failed.
# Results go to benchmarks/.results/ (git-ignored).
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
rounds=3
# row NAME MEASURED TARGET VERDICT
row() { rows+=("$1|$2|$3|$4"); }
# spread VALUES...: "median (min-max)" of the values, to 3 significant figures.
spread() { python3 -c 'import sys,statistics; v=sorted(float(x) for x in sys.argv[1:]); f=lambda x: f"{x:,.3g}" if x < 1000 else f"{x:,.0f}"; print(f"{f(statistics.median(v))} ({f(v[0])}-{f(v[-1])})")' "$@"; }
median() { python3 -c 'import sys,statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@"; }
# verdict "MEDIAN OP TARGET": "meets" or "misses".
verdict() { python3 -c "print('meets' if $1 else 'misses')"; }
ratio() { python3 -c "print(f'{$1/$2:.3f}')"; }

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
    ">= 0.95 x without" "$(verdict "$(median "${blocklist_ratios[@]}") >= 0.95")"

echo "== (b) line protocol" >&2
pings="$work/pings.ndjson"
python3 -c "import sys; sys.stdout.write('{\"op\":\"ping\"}\n' * $requests)" > "$pings"
# The server's commit-duration histogram, one "UPPER COUNT" line a bucket (counts are cumulative).
commit_buckets() {
    curl -sf --max-time 5 "http://127.0.0.1:$http/metrics" \
        | sed -n 's/^identity_graph_commit_duration_seconds_bucket{le="\([^"]*\)"} \(.*\)$/\1 \2/p'
}
# The median duration, in microseconds (interpolated within its bucket), of the commits made since
# the buckets in file $1 were taken: the histogram counts every commit since the server started.
commit_median_us() {
    commit_buckets | python3 -c '
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
    low, below = upper, count' "$1"
}
start_server "$work/tcp-store"
"$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --workload "$workload" --json > "$results/tcp-first-pass.json" || failed=1
tcp_rates=(); tcp_ratios=(); p99s=(); p99_bounds=(); p99_verdicts=()
for round in $(seq $rounds); do
    "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --workload "$pings" --json > "$results/tcp-ping-$round.json" || failed=1
    "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 64 --workload "$workload" --json > "$results/tcp-pipelined-$round.json" || failed=1
    ping_rate=$(json_field "['throughput']" < "$results/tcp-ping-$round.json")
    identify_rate=$(json_field "['throughput']" < "$results/tcp-pipelined-$round.json")
    tcp_rates+=("$identify_rate"); tcp_ratios+=("$(ratio "$identify_rate" "$ping_rate")")
    "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 1 --requests $((requests / 20)) --workload "$pings" --json > "$results/tcp-ping-latency-$round.json" || failed=1
    commit_buckets > "$work/commits-before"
    "$bin/loadgen" --protocol tcp --port "$tcp" --connections 8 --pipeline 1 --requests $((requests / 20)) --workload "$workload" --json > "$results/tcp-unpipelined-$round.json" || failed=1
    ping_p99=$(json_field "['latencyMicros']['p99']" < "$results/tcp-ping-latency-$round.json")
    p99=$(json_field "['latencyMicros']['p99']" < "$results/tcp-unpipelined-$round.json")
    commit=$(commit_median_us "$work/commits-before")
    bound=$(python3 -c "print(int($ping_p99 + 2 * $commit))")
    p99s+=("$p99"); p99_bounds+=("$bound")
    p99_verdicts+=("$(python3 -c "print(1 if $p99 <= $bound and $p99 <= 1000 else 0)")")
done
stop_server
row "TCP, 8 connections x 64 pipelined, durable" "$(spread "${tcp_ratios[@]}") x ping; $(spread "${tcp_rates[@]}") /s" \
    ">= 0.8 x ping and >= 300,000 /s" "$(verdict "$(median "${tcp_ratios[@]}") >= 0.8 and $(median "${tcp_rates[@]}") >= 3e5")"
row "TCP, 8 connections, 1 in flight: p99" "$(spread "${p99s[@]}") us; bound ping p99 + 2 x median commit: $(spread "${p99_bounds[@]}") us" \
    "<= bound and <= 1,000 us in each round" "$(verdict "min([$(IFS=,; echo "${p99_verdicts[*]}")]) == 1")"

echo "== (c) HTTP" >&2
start_server "$work/http-store"
"$bin/loadgen" --protocol http --port "$http" --connections 8 --workload "$workload" --requests $((requests / 5)) --json > "$results/http-loadgen.json" || failed=1
# Warm-up, then /healthz and /identify alternated on the same server.
WORKLOAD="$workload" wrk -t2 -c64 -d3s -s benchmarks/wrk/identify.lua "http://127.0.0.1:$http/identify" > /dev/null || failed=1
wrk -t2 -c64 -d3s "http://127.0.0.1:$http/healthz" > /dev/null || failed=1
http_rates=(); http_ratios=()
for round in $(seq $rounds); do
    wrk -t2 -c64 -d10s "http://127.0.0.1:$http/healthz" > "$results/wrk-healthz-$round.txt" || failed=1
    WORKLOAD="$workload" wrk -t2 -c64 -d10s -s benchmarks/wrk/identify.lua "http://127.0.0.1:$http/identify" > "$results/wrk-identify-$round.txt" || failed=1
    if grep -q "Non-2xx" "$results/wrk-identify-$round.txt"; then failed=1; fi
    healthz_rate=$(awk '/Requests\/sec/ {print $2}' "$results/wrk-healthz-$round.txt")
    identify_rate=$(awk '/Requests\/sec/ {print $2}' "$results/wrk-identify-$round.txt")
    http_rates+=("$identify_rate"); http_ratios+=("$(ratio "$identify_rate" "$healthz_rate")")
done
stop_server
row "HTTP identify with wrk (2 threads, 64 conns)" "$(spread "${http_ratios[@]}") x healthz; $(spread "${http_rates[@]}") /s" \
    ">= 0.85 x healthz" "$(verdict "$(median "${http_ratios[@]}") >= 0.85")"
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
    for round in $(seq $rounds); do
        scan=$("$bin/populate" --data-dir "$work/store-$size" --scan | json_field "['seconds']") || failed=1
        start_server "$work/store-$size"
        rss=$(rss_kb "$pid")
        stop_server
        restarts+=("$ready_ms"); restart_ratios+=("$(python3 -c "print(f'{$ready_ms / 1000 / $scan:.2f}')")")
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
        "<= 200 B" "$(verdict "$(median "${per_contacts[@]}") <= 200")"
    row "disk per contact at $size contacts" "$(( disk / size )) B" "(reference)" "-"
    row "restart with $size contacts (start to healthz 200)" \
        "$(spread "${restart_ratios[@]}") x bare cursor scan; $(spread "${restarts[@]}") ms" \
        "<= 2 x scan and <= 5,000 ms at 10M" \
        "$(verdict "$(median "${restart_ratios[@]}") <= 2 and ($size < 10000000 or $(median "${restarts[@]}") <= 5000)")"
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

if [ $micro -eq 1 ]; then
    echo "== micro-benchmarks, checked against benchmarks/Thresholds/" >&2
    (cd benchmarks && swift package --disable-sandbox benchmark thresholds check --target EngineBenchmarks) \
        | tee "$results/micro.txt" >&2 || failed=1
fi

{
    echo "| measure | measured: median (spread) of $rounds rounds | target | verdict |"
    echo "|---|---|---|---|"
    for entry in "${rows[@]}"; do
        IFS='|' read -r name value target result <<< "$entry"
        echo "| $name | $value | $target | $result |"
    done
} | tee "$results/table.md"
echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB, $(uname -r); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
if [ $failed -ne 0 ]; then
    echo "one or more runs failed; see $results" >&2
    exit 1
fi
