#!/usr/bin/env bash
# The dashboard's speed (BENCHMARKS.md, "The dashboard"): the September festival run with
# 100,000 customers in a release build, the shop's numbers of every burst day imported, the
# daemon started with --http, then tests/examples/dashboard_load.rs in Debian's chromium (through
# chromedriver): time to first and last byte of the campaign page and the weekly report against
# the API's status, the browser's full load of both against a static file, and the time from an
# event appended to the page updated against the append's own answer; all in the same run.
#
#   bash orchestrator/benches/dashboard.sh [CUSTOMERS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."

customers=${1:-100000}
rounds=${2:-20}
command -v chromedriver >/dev/null || { echo "dashboard: chromedriver is not installed (apt-get install chromium chromium-driver)" >&2; exit 1; }

cargo build --release -p battleplan-orchestrator --bin battleplan >&2
cargo build --release -p battleplan-tests --example dashboard_load >&2
bp=$PWD/target/release/battleplan
load=$PWD/target/release/examples/dashboard_load
work=$(mktemp -d)
daemon=""
cleanup() {
  [ -n "$daemon" ] && kill "$daemon" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# After the festival (the scenario runs it to the end of its review): the store never goes back.
end=2026-10-09T00:00:00+08:00
sed "s/^generate = 10000$/generate = $customers/" scenarios/september-festival.toml > "$work/festival.toml"
echo "dashboard: running the festival with $customers customers..." >&2
USER=bench "$bp" scenario run "$work/festival.toml" --out "$work/run" > /dev/null
data=$work/run/data
{
  echo "date,visitors,page_views,inquiries,new_fans,placed_orders,paid_orders,paying_buyers,returning_buyers,gmv,hot_product,hot_keyword,count"
  for day in $(seq -w 2 25); do
    echo "2026-09-$day,1${day}00,4${day}00,${day}0,${day},3${day},2${day},2${day},${day},${day}000.00,,,"
    echo "2026-09-$day,,,,,,,,,,保温杯 500ml,,${day}0"
    echo "2026-09-$day,,,,,,,,,,,insulated cup,${day}5"
  done
} > "$work/shop.csv"
USER=bench "$bp" --data "$data" metrics import "$work/shop.csv" --zone Asia/Shanghai --clock-at "$end" >&2
token=$(USER=bench "$bp" --data "$data" token create --name bench.manager --role manager 2>/dev/null)

USER=bench "$bp" --data "$data" run --clock-at "$end" --http 127.0.0.1:0 2> "$work/daemon.log" &
daemon=$!
for _ in $(seq 600); do
  grep -q "caught up" "$work/daemon.log" && grep -q "HTTP API on" "$work/daemon.log" && break
  sleep 0.1
done
address=$(grep -o "HTTP API on http://[0-9.:]*" "$work/daemon.log" | head -1 | sed 's|.*http://||')
[ -n "$address" ] || { cat "$work/daemon.log" >&2; exit 1; }
echo "dashboard: $customers customers; $rounds rounds" >&2
"$load" "$address" "$token" sept-festival-2026 "$rounds"
