#!/usr/bin/env bash
# The four shipped policies against nginx and the pure relay, in one run: nginx
# (:18081), rtp-proxy as a pure relay (:18443) and rtp-proxy with osc-aob, caller-filter,
# look-back and block-check with the PDL access log (:18445), interleaved, all in front
# of the bench's upstream stub (../shared/bench). Block lookups and the access log go to
# the simulator (:19080).
#
#   examples/bench/four-policies.sh          # ROUNDS=3 DURATION=10 CONNS=64 SIZES="2k 200k"
#
# Why not compare.sh: its probe requires every target to return the stub's exact bytes,
# and with the policies on the answer is filtered (look-back drops records older than 36
# months, block-check the one without owner ids). wrk runs pinned like compare.sh's
# run.sh, with the same request plus the accessing user (post-with-actor.lua).
#
# Needs ../shared/bench (nginx, wrk) and release builds:
#   cargo build --release --workspace --bins
#   cargo build --release --target wasm32-wasip2 -p 'rtp-policy-*'
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BENCH=../shared/bench
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
SIZES=${SIZES:-"2k 200k"}
WRK_CPU=${WRK_CPU:-1}
SERVER_CPU=${SERVER_CPU:-0}

"$BENCH/servers.sh" start >/dev/null
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    "$BENCH/servers.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

rm -rf target/bench-access-log
timeout 3600 target/release/ntjp-sim --config examples/bench/ntjp-sim-services.toml \
    >/tmp/rtp-bench-sim.log 2>&1 &
pids+=($!)
for config in rtp-proxy.toml rtp-proxy-four-policies.toml; do
    taskset -c "$SERVER_CPU" timeout 3600 target/release/rtp-proxy run --config "examples/bench/$config" \
        >"/tmp/rtp-bench-${config%.toml}.log" 2>&1 &
    pids+=($!)
done
for port in 19080 18443 18445; do
    for _ in $(seq 1 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
    done
done

url() { echo "http://127.0.0.1:$1/bench/$2/clinicalprocess/healthcond/description/GetCareDocumentation/2/rivtabp21"; }
# One wrk run; prints its BENCH line (rps=... p50_ms=... requests=... errors=... bytes_per_req=...).
run() {
    timeout -k 5 $((DURATION + 30)) taskset -c "$WRK_CPU" wrk -t1 -c"$CONNS" -d"${2}s" --timeout 10s \
        --latency -s examples/bench/post-with-actor.lua "$1" 2>&1 | grep '^BENCH ' | tail -n 1
}

# Warm-up, not recorded (also fills the block cache and compiles nothing on the way).
for size in $SIZES; do
    for port in 18081 18443 18445; do run "$(url "$port" "$size")" 5 >/dev/null; done
done

declare -A results
for round in $(seq 1 "$ROUNDS"); do
    for size in $SIZES; do
        for target in nginx:18081 relay:18443 policies:18445; do
            name=${target%%:*}
            line=$(run "$(url "${target##*:}" "$size")" "$DURATION")
            echo "round=$round size=$size target=$name $line"
            rps=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$line")
            results[$size:$name]+="$rps "
        done
    done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for size in $SIZES; do
    nginx=$(median <<<"${results[$size:nginx]}")
    relay=$(median <<<"${results[$size:relay]}")
    policies=$(median <<<"${results[$size:policies]}")
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
    echo "size=$size median rps: nginx=$nginx relay=$relay four-policies=$policies relay/nginx=$(ratio "$relay" "$nginx") four-policies/nginx=$(ratio "$policies" "$nginx") four-policies/relay=$(ratio "$policies" "$relay")"
done
echo "access-log entries delivered to the log service: $(curl -s http://127.0.0.1:19080/_sim/logs | grep -o '"log_id"' | wc -l)"
