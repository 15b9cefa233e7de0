#!/usr/bin/env bash
# The September festival end to end on PostgreSQL against the same on sled, in one run
# (BENCHMARKS.md, "The log on PostgreSQL"): the shipped plan, CUSTOMERS generated customers
# imported, then `run --simulate` from before the prep to the end of the review (every
# transition, reminder, reach-out, follow-up and send, through the file outbox), with the release
# build; wall time and peak memory of each step from /usr/bin/time. PostgreSQL is the server
# `.ci/postgres` starts (BATTLEPLAN_TEST_POSTGRES, BATTLEPLAN_TEST_POSTGRES_PASSWORD), a fresh
# database for the run.
#
#   eval "$(bash .ci/postgres)"; bash orchestrator/benches/festival_postgres.sh [CUSTOMERS]
set -euo pipefail
cd "$(dirname "$0")/../.."

customers=${1:-100000}
: "${BATTLEPLAN_TEST_POSTGRES:?run eval \"\$(bash .ci/postgres)\" first}"
cargo build --release -p battleplan-orchestrator --bin battleplan >&2
bp=$PWD/target/release/battleplan
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

database=bench_festival_$$
base=${BATTLEPLAN_TEST_POSTGRES%/*}
PGPASSWORD=$BATTLEPLAN_TEST_POSTGRES_PASSWORD psql -q "$BATTLEPLAN_TEST_POSTGRES" -c "CREATE DATABASE $database"
export BATTLEPLAN_STORE_PASSWORD=$BATTLEPLAN_TEST_POSTGRES_PASSWORD
postgres_url="$base/$database?tenant=bench"
export USER=bench

"$bp" init --out plan.toml > /dev/null
"$bp" customers generate --count "$customers" --as-of 2026-08-18T00:00:00+08:00 --out customers.csv > /dev/null

measure() { # NAME STORE-ARGUMENTS... -- COMMAND...
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o time.txt "$bp" "$@" > /dev/null 2> err.txt || { cat err.txt >&2; exit 1; }
  read -r seconds kib < time.txt
  printf '  %-34s %8.1f s  %6.0f MiB\n' "$name" "$seconds" "$((kib / 1024))"
}

for store in sled postgres; do
  if [ "$store" = sled ]; then where=(--data "sled-data"); else where=(--store "$postgres_url" --data pg-node); fi
  echo "$store ($customers customers):"
  measure "plan apply" "${where[@]}" plan apply plan.toml --clock-at 2026-08-01T00:00:00Z
  measure "customers import" "${where[@]}" customers import customers.csv --clock-at 2026-08-18T00:00:00+08:00
  measure "run --simulate (the whole festival)" "${where[@]}" run --simulate --clock-at 2026-08-18T00:00:00+08:00
  measure "audit verify" "${where[@]}" audit verify
  "$bp" "${where[@]}" export --out "$store.jsonl" > /dev/null
  echo "  $(wc -l < "$store.jsonl") lines exported"
done
PGPASSWORD=$BATTLEPLAN_TEST_POSTGRES_PASSWORD psql -q "$BATTLEPLAN_TEST_POSTGRES" -c "DROP DATABASE $database"
