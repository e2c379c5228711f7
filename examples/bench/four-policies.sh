#!/usr/bin/env bash
# The four shipped policies against nginx and the pure relay, in one run: nginx
# (:18081), rtp-proxy as a pure relay (:18443) and rtp-proxy with osc-aob, caller-filter,
# look-back and block-check with the PDL access log (:18445), interleaved, all in front
# of the bench's upstream stub (../shared/bench). Block lookups and the access log go to
# the simulator (:19080).
#
#   examples/bench/four-policies.sh | tee /tmp/four.txt
#
# Env (defaults): ROUNDS=3 DURATION=10 WARMUP=5 CONNS=64 SIZES="2k 200k" WRK_CPU=1
# SERVER_CPU=0 (upstream stub and proxies; the simulator runs unpinned, its CPU is
# reported apart as svc_us) JOURNAL_DIR=target/bench-access-log (the PDL journal: it is
# fsync'ed before each answer is released, so the disk under it counts).
#
# Why not compare.sh: its probe requires every target to return the stub's exact bytes,
# and with the policies on the answer is filtered (look-back drops records older than 36
# months, block-check the one without owner ids); its wrk script cannot send the
# accessing user either. wrk runs as in compare.sh's run.sh (one thread, pinned, bounded),
# with the same request plus the accessing user (post-with-actor.lua).
#
# Per run: rps, p50/p99 (ms), errors (connect/read/write/timeout and HTTP >= 400),
# srv_us (CPU time, user + system, all threads, of the target's own processes per
# request) and, for the policies, svc_us (the simulator's CPU per request: block service
# and log service). The table gives medians over the rounds and ratios to nginx.
#
# Needs ../shared/bench (nginx, wrk) and release builds:
#   cargo build --release --workspace --bins
#   cargo build --release --target wasm32-wasip2 -p 'rtp-policy-*'
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BENCH=../shared/bench
# shellcheck source=/dev/null
source "$BENCH/lib.sh"
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-5}
CONNS=${CONNS:-64}
SIZES=${SIZES:-"2k 200k"}
WRK_CPU=${WRK_CPU:-1}
SERVER_CPU=${SERVER_CPU:-0}
JOURNAL_DIR=${JOURNAL_DIR:-target/bench-access-log}
for n in $ROUNDS $DURATION $WARMUP $CONNS; do
    [[ $n =~ ^[0-9]+$ ]] || bench_die "ROUNDS, DURATION, WARMUP and CONNS must be whole numbers"
done
for bin in target/release/rtp-proxy target/release/ntjp-sim \
    target/wasm32-wasip2/release/rtp_policy_block_check.wasm; do
    [ -e "$bin" ] || bench_die "$bin is missing; build it first (see the top of this script)"
done

RUN=$(mktemp -d /tmp/rtp-four-policies.XXXXXX)
chmod 755 "$RUN" # nginx workers (another user) read the canned answers under it
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    BENCH_RUN_DIR=$RUN/servers "$BENCH/servers.sh" stop >/dev/null 2>&1 || true
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The proxy config names its journal; a copy points it at JOURNAL_DIR.
# A fresh journal: only its own files are removed, whatever directory is given.
mkdir -p "$JOURNAL_DIR"
rm -f "$JOURNAL_DIR"/journal-*.jsonl "$JOURNAL_DIR/cursor.json"
journal=$(cd "$JOURNAL_DIR" && pwd)
sed "s#^dir = .*#dir = \"$journal\"#" examples/bench/rtp-proxy-four-policies.toml \
    >examples/bench/.four-policies-run.toml
trap 'rm -f examples/bench/.four-policies-run.toml; cleanup' EXIT

lifetime=$((ROUNDS * 3 * $(wc -w <<<"$SIZES") * (DURATION + 2) + 300))
BENCH_RUN_DIR=$RUN/servers SERVER_MAX_LIFETIME=$lifetime "$BENCH/servers.sh" start upstream nginx >/dev/null
timeout "$lifetime" target/release/ntjp-sim --config examples/bench/ntjp-sim-services.toml \
    >"$RUN/sim.log" 2>&1 &
pids+=($!)
for entry in relay:rtp-proxy.toml policies:.four-policies-run.toml; do
    RUST_LOG=${RUST_LOG:-warn} taskset -c "$SERVER_CPU" timeout "$lifetime" target/release/rtp-proxy run \
        --config "examples/bench/${entry#*:}" >"$RUN/${entry%%:*}.log" 2>&1 &
    pids+=($!)
done
for port in 19080 18443 18445; do
    BENCH_START_TIMEOUT=60 bench_wait_listen "$port" || bench_die "nothing listens on $port (logs: $RUN)"
done
# The processes themselves (under `timeout`), found by their listeners.
sim_pids=$(bench_listener_pids 19080)

url() { echo "http://127.0.0.1:$1/bench/$2/clinicalprocess/healthcond/description/GetCareDocumentation/2/rivtabp21"; }
server_pids() {
    case $1 in
    nginx) bench_listener_pids 18081 ;;
    relay) bench_listener_pids 18443 ;;
    policies) bench_listener_pids 18445 ;;
    esac
}
# One wrk run; prints its BENCH line (rps=... p50_ms=... requests=... errors=...).
run() {
    timeout -k 5 $(($2 + 30)) taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${2}s" --timeout 10s \
        --latency -s examples/bench/post-with-actor.lua "$1" 2>&1 | grep '^BENCH ' | tail -n 1
}
field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<" $2"; }
ticks_per_s=$(getconf CLK_TCK)
per_request_us() { awk -v t="$1" -v n="$2" -v hz="$ticks_per_s" 'BEGIN { printf "%.1f", (n > 0 ? t * 1e6 / hz / n : 0) }'; }

echo "# The four shipped policies vs nginx and the pure relay, one run"
echo "date:     $(date -Is)"
echo "machine:  nproc=$(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), load at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "journal:  $journal ($(df -T "$journal" | awk 'NR == 2 { print $2 }'))"
echo "command:  ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP CONNS=$CONNS SIZES='$SIZES' WRK_CPU=$WRK_CPU SERVER_CPU=$SERVER_CPU examples/bench/four-policies.sh"

# Warm-up, not recorded (fills the block cache and the upstream connection pools).
for size in $SIZES; do
    for port in 18081 18443 18445; do run "$(url "$port" "$size")" "$WARMUP" >/dev/null; done
done

results=$RUN/results.txt
for round in $(seq 1 "$ROUNDS"); do
    for size in $SIZES; do
        for target in nginx:18081 relay:18443 policies:18445; do
            name=${target%%:*}
            # shellcheck disable=SC2046  # pid lists split on purpose
            before=$(bench_cpu_ticks $(server_pids "$name"))
            # shellcheck disable=SC2086
            sim_before=$(bench_cpu_ticks $sim_pids)
            line=$(run "$(url "${target##*:}" "$size")" "$DURATION")
            # shellcheck disable=SC2046
            after=$(bench_cpu_ticks $(server_pids "$name"))
            # shellcheck disable=SC2086
            sim_after=$(bench_cpu_ticks $sim_pids)
            requests=$(field requests "$line")
            srv=$(per_request_us $((after - before)) "${requests:-0}")
            svc=$(per_request_us $((sim_after - sim_before)) "${requests:-0}")
            echo "round=$round size=$size target=$name $line srv_us=$srv svc_us=$svc" | tee -a "$results"
        done
    done
done

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR) print a[int((NR + 1) / 2)]; else print 0 }'; }
values() { grep " size=$1 target=$2 " "$results" | sed -n "s/.* $3=\([0-9.]*\).*/\1/p"; }
echo
printf '%-5s %-9s %8s %8s %8s %9s %8s %8s %7s %6s\n' size target rps p50_ms p99_ms rps/nginx srv_us svc_us spread errors
for size in $SIZES; do
    nginx_rps=$(values "$size" nginx rps | median)
    for name in nginx relay policies; do
        rps=$(values "$size" "$name" rps | median)
        spread=$(values "$size" "$name" rps | sort -n | awk -v m="$rps" '{ a[NR] = $1 } END { printf "%.0f%%", (m > 0 ? (a[NR] - a[1]) * 100 / m : 0) }')
        errors=$(values "$size" "$name" errors | awk '{ s += $1 } END { print s + 0 }')
        printf '%-5s %-9s %8.0f %8s %8s %9s %8s %8s %7s %6s\n' "$size" "$name" "$rps" \
            "$(values "$size" "$name" p50_ms | median)" "$(values "$size" "$name" p99_ms | median)" \
            "$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')" \
            "$(values "$size" "$name" srv_us | median)" "$(values "$size" "$name" svc_us | median)" \
            "$spread" "$errors"
    done
done
echo
echo "access-log entries delivered to the log service (warm-up included): $(curl -s http://127.0.0.1:19080/_sim/logs | grep -o '"log_id"' | wc -l)"
