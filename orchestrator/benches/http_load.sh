#!/usr/bin/env bash
# The HTTP API under load (BENCHMARKS.md, "HTTP API"): wrk on loopback against the daemon
# holding the September festival run with 100,000 customers, for status, funnel and one page of
# history, and against a bare axum handler returning the same bytes (examples/bare_http.rs),
# measured in the same run. Needs wrk (Debian's package) and a release build.
#
#   bash orchestrator/benches/http_load.sh [CUSTOMERS] [SECONDS] [CONNECTIONS] [RUNS]
#
# wrk runs with one thread (WRK_THREADS to change it): on two cores, a second wrk thread takes
# the server's CPU and both servers' tails then measure the scheduler more than the server.
# Each request is measured RUNS times (3), daemon and baseline alternating.
set -euo pipefail
cd "$(dirname "$0")/../.."

customers=${1:-100000}
seconds=${2:-15}
connections=${3:-64}
runs=${4:-3}
threads=${WRK_THREADS:-1}
command -v wrk >/dev/null || { echo "http_load: wrk is not installed (apt-get install wrk)" >&2; exit 1; }

cargo build --release -p battleplan-orchestrator --bin battleplan --example bare_http >&2
bp=$PWD/target/release/battleplan
bare=$PWD/target/release/examples/bare_http
work=$(mktemp -d)
daemon=""
baseline=""
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
  [ -n "$baseline" ] && kill "$baseline" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

end=2026-09-26T00:00:00+08:00
sed "s/^generate = 10000$/generate = $customers/" scenarios/september-festival.toml > "$work/festival.toml"
echo "http_load: running the festival with $customers customers..." >&2
USER=bench "$bp" scenario run "$work/festival.toml" --out "$work/run" > /dev/null
data=$work/run/data
token=$(USER=bench "$bp" --data "$data" token create --name bench.auditor --role auditor 2>/dev/null)

USER=bench "$bp" --data "$data" run --clock-at "$end" --http 127.0.0.1:0 2> "$work/daemon.log" &
daemon=$!
for _ in $(seq 600); do
  grep -q "other terminals reach this daemon" "$work/daemon.log" && grep -q "HTTP API on" "$work/daemon.log" && break
  sleep 0.1
done
address=$(grep -o "HTTP API on http://[0-9.:]*" "$work/daemon.log" | head -1 | sed 's|.*http://||')
[ -n "$address" ] || { cat "$work/daemon.log" >&2; exit 1; }

campaign=sept-festival-2026
declare -A paths=(
  [status]="/api/v1/campaigns/$campaign"
  [funnel]="/api/v1/campaigns/$campaign/funnel"
  [history]="/api/v1/campaigns/$campaign/history?limit=100"
)
mkdir -p "$work/bodies"
for name in status funnel history; do
  curl -sf -H "Authorization: Bearer $token" "http://$address${paths[$name]}" > "$work/bodies/$name.json"
done
"$bare" 127.0.0.1:0 "$work/bodies" 2> "$work/bare.log" &
baseline=$!
for _ in $(seq 100); do grep -q "bare_http on" "$work/bare.log" && break; sleep 0.1; done
bare_address=$(grep -o "http://[0-9.:]*" "$work/bare.log" | head -1 | sed 's|http://||')

measure() { # URL [header]
  local out
  if [ $# -gt 1 ]; then
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency -H "$2" "$1")
  else
    out=$(wrk -t"$threads" -c"$connections" -d"${seconds}s" --latency "$1")
  fi
  local rps p50 p99 errors
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  errors=$(awk '/Non-2xx/ {print $4}' <<<"$out")
  echo "$rps | $p50 | $p99 | ${errors:-0}"
}

echo
echo "wrk -t$threads -c$connections -d${seconds}s on loopback, $customers customers, $(nproc) cores, $runs runs"
echo
echo "| request | server | run | requests/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|---|---|"
for name in status funnel history; do
  for run in $(seq "$runs"); do
    echo "| $name | daemon | $run | $(measure "http://$address${paths[$name]}" "Authorization: Bearer $token") |"
    echo "| $name | bare axum, same bytes | $run | $(measure "http://$bare_address/$name") |"
  done
done
echo
echo "bytes: status $(wc -c < "$work/bodies/status.json"), funnel $(wc -c < "$work/bodies/funnel.json"), history page $(wc -c < "$work/bodies/history.json")"
