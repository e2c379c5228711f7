#!/usr/bin/env bash
# Policy overhead in one run: rtp-proxy as a pure relay (:18443) against rtp-proxy with
# four no-op policies (:18444), interleaved, both pinned like compare.sh pins proxies,
# against the bench's upstream stub. Prints every run and the medians.
#
#   examples/bench/policies-vs-relay.sh            # ROUNDS=3 DURATION=10 CONNS=64, 2 KB
#
# Needs ../shared/bench (nginx, wrk) and a release build:
#   cargo build --release -p rtp-proxy
#   cargo build --release --target wasm32-wasip2 -p rtp-test-policy
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
BENCH=../shared/bench
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
URL_PATH=/bench/2k/clinicalprocess/healthcond/description/GetCareDocumentation/2/rivtabp21

"$BENCH/servers.sh" start >/dev/null
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    "$BENCH/servers.sh" stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

for config in rtp-proxy.toml rtp-proxy-noop-policies.toml; do
    taskset -c 0 timeout 1800 target/release/rtp-proxy run --config "examples/bench/$config" \
        >"/tmp/rtp-bench-${config%.toml}.log" 2>&1 &
    pids+=($!)
done
for port in 18443 18444; do
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.2
    done
done
# Warm-up, not recorded.
for port in 18443 18444; do "$BENCH/run.sh" "http://127.0.0.1:$port$URL_PATH" 5 "$CONNS" >/dev/null; done

declare -A results
for round in $(seq 1 "$ROUNDS"); do
    for target in relay:18443 policies:18444; do
        name=${target%%:*}
        port=${target##*:}
        line=$("$BENCH/run.sh" "http://127.0.0.1:$port$URL_PATH" "$DURATION" "$CONNS")
        echo "round=$round target=$name $line"
        rps=$(sed -n 's/.*rps=\([0-9.]*\).*/\1/p' <<<"$line")
        results[$name]+="$rps "
    done
done
median() { tr ' ' '\n' | sed '/^$/d' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
relay=$(median <<<"${results[relay]}")
policies=$(median <<<"${results[policies]}")
echo "median rps: relay=$relay four-noop-policies=$policies ratio=$(awk -v a="$policies" -v b="$relay" 'BEGIN {printf "%.3f", a/b}')"
