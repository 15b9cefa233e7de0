#!/usr/bin/env bash
# Mail over SMTP (BENCHMARKS.md, "Mail over SMTP"): the daemon sending a 20,000-customer mail
# reach-out to an SMTP server on loopback (tests/smtp_server.py --discard, aiosmtpd) over 1, 4
# and 16 pooled connections, every send recorded in its log; and, in the same run against the
# same server, a bare lettre loop sending the same number of messages of the same shape over
# as many connections (adapters/examples/bare_lettre.rs). Needs a Python with aiosmtpd
# (target/smtp-venv, README.md; or BATTLEPLAN_SMTP_PYTHON) and a release build.
#
#   bash orchestrator/benches/smtp_send.sh [CUSTOMERS] [RUNS]
#
# CUSTOMERS (20000): the reach-out's size. RUNS (1): rounds; in each, for 1, 4 and 16 connections
# (SMTP_CONNECTIONS="1 4 16"), the daemon then the baseline, each against a server of its own.
# BENCH_BUILD=0 uses the release binaries already built. SMTP_STOCK=1 adds, after each baseline,
# the same loop on connections opened as lettre opens them (`bare_lettre --stock`: Nagle's
# algorithm on, about 40 ms a message; slow: use CUSTOMERS 2000). SMTP_KEEP=DIR keeps the
# stores, logs and the servers' figures there.
#
# The campaign: the example plan (`battleplan init`) with mail's quotas, budget and quiet hours
# taken off, the warm-up recall's segment widened to every customer, the warm-up's other
# reach-outs (own lists, visitor coupons) taken out, and `[channels.mail.smtp]` naming the
# server with `connections = N`; CUSTOMERS generated customers (seed 7) that all have a usable
# address and no unsubscribe, picked from `customers generate`, imported. Then `battleplan run
# --clock-at WARM_UP --until WARM_UP`: the daemon plans the reach-out (one `SendPlanned` per
# customer), sends it through the channel 500 a batch, records each `MessageSent`, and exits when
# nothing due is left; `timeout` bounds it.
#
# Measured: the server's count and the wall-clock instants at which it read the first and the
# last message whole; mails/s = count / (last - first). Also the daemon's whole run (start to
# exit: opening the store, planning, sending, closing) and CPU time of the daemon, the baseline
# and the server. Checked: the server received CUSTOMERS messages, each key once, and the log
# records a mail `MessageSent` for exactly the keys received.
set -euo pipefail
cd "$(dirname "$0")/../.."

customers=${1:-20000}
runs=${2:-1}
connections_list=${SMTP_CONNECTIONS:-1 4 16}
python=${BATTLEPLAN_SMTP_PYTHON:-$PWD/target/smtp-venv/bin/python}
[ -x /usr/bin/time ] || { echo "smtp_send: needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
"$python" -c "import aiosmtpd" 2>/dev/null || {
  echo "smtp_send: $python has no aiosmtpd (python3 -m venv target/smtp-venv && target/smtp-venv/bin/pip install aiosmtpd==1.4.6)" >&2
  exit 1
}

if [ "${BENCH_BUILD:-1}" != 0 ]; then
  cargo build --release -p battleplan-orchestrator --bin battleplan >&2
  cargo build --release -p battleplan-adapters --example bare_lettre >&2
fi
bp=$PWD/target/release/battleplan
bare=$PWD/target/release/examples/bare_lettre
export USER=bench

work=$(mktemp -d)
server=""
cleanup() {
  exec 7>&- 2>/dev/null || true
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

warm_up=2026-08-26T00:00:00+08:00

# The server, in DIR, on PORT (0: a free one); sets $server and $port. It stops when file
# descriptor 7 (its standard input) is closed, after writing its last figures.
start_server() { # DIR PORT
  mkdir -p "$1"
  mkfifo "$1/stdin"
  "$python" tests/smtp_server.py "$1/out" --port "$2" --discard < "$1/stdin" > "$1/said" 2> "$1/server.log" &
  server=$!
  exec 7> "$1/stdin"
  for _ in $(seq 200); do
    grep -q "smtp on" "$1/said" && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.05
  done
  port=$(sed -n 's/^smtp on 127.0.0.1:\([0-9]*\)$/\1/p' "$1/said")
  [ -n "$port" ] || { cat "$1/server.log" >&2; echo "smtp_send: the server did not start" >&2; exit 1; }
}
# The server's CPU time so far, in clock ticks (user + system).
server_ticks() { awk '{print $14 + $15}' "/proc/$server/stat"; }
stop_server() {
  exec 7>&-
  wait "$server"
  server=""
}

# The customers: generated, then the first CUSTOMERS with a usable address, no unsubscribe, not
# in the recycle bin nor on the plan's do-not-contact list (so that each is sent one mail).
echo "smtp_send: generating $customers customers..." >&2
"$bp" customers generate --count $((customers * 13 / 10 + 1000)) --seed 7 \
  --as-of 2026-08-20T00:00:00+08:00 --out "$work/generated.csv" > /dev/null
"$python" - "$work/generated.csv" "$customers" "$work/customers.csv" "$work/recipients.tsv" <<'EOF'
import csv, re, sys
source, count, out, recipients = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
usable = re.compile(r"^[A-Za-z0-9._+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
never = {"c-000417", "c-002291"}
with open(source, newline="", encoding="utf-8") as f:
    rows = csv.reader(f)
    header = next(rows)
    at = {name: i for i, name in enumerate(header)}
    kept = []
    for row in rows:
        if (usable.match(row[at["email"]]) and not row[at["unsubscribed"]]
                and not row[at["recycle_bin"]] and row[at["id"]] not in never):
            kept.append(row)
            if len(kept) == count:
                break
if len(kept) < count:
    sys.exit("smtp_send: only %d usable customers generated" % len(kept))
with open(out, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(kept)
with open(recipients, "w", encoding="utf-8") as f:
    for row in kept:
        f.write("%s\t%s\t%s\n" % (row[at["id"]], row[at["email"]], row[at["name"]] or "customer"))
EOF

# The plan, with __PORT__ and __CONNECTIONS__ to fill in.
"$bp" init --out "$work/example.toml" > /dev/null
"$python" - "$work/example.toml" "$work/plan.toml.in" <<'EOF'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
replacements = [
    ('all = [\n  { source = "shared_pool" },\n  { activity = "inquired", within = "180d" },\n]\nnone = [{ activity = "ordered", within = "30d" }]\n',
     'all = [{ source = ["shared_pool", "own_list", "offline_import"] }]\n'),
    ("free_per_day = 200          # the first 200 a day are free\n", ""),
    ("daily_cap = 2000            # the platform's initial cap\n", ""),
    ("cost_per_1000 = 2.00        # then 2 CNY per 1000\n", ""),
    ('quiet_hours = { start = "22:00", end = "08:00", policy = "hold" }\n', ""),
    ("monthly_budget = 100.00\n", ""),
    ('accounts = ["shop-mail"]\n',
     'accounts = ["shop-mail"]\nsmtp = { host = "127.0.0.1", port = __PORT__, tls = "none", from = "Shop 商城 <shop@example.com>", reply_to = "sales@example.com", connections = __CONNECTIONS__, timeout = "10s" }\n'),
    ('[reach_outs.warm-up-own-lists]\nname = "Warm up the sales reps\' own lists"\nsegment = "own-lists"\nchannel = "mail"\nwindow = "warm_up"\n\n', ""),
    ('[reach_outs.visitor-coupons]\nname = "Coupons to visitors who left a card"\nsegment = "card-visitors"\nchannel = "in-site"\nwindow = { start = "prep.start", end = "burst.end" }\ntemplate = "in-site-visitor-coupon"\n', ""),
]
for old, new in replacements:
    found = text.count(old)
    if found != 1:
        sys.exit("smtp_send: %r occurs %d times in the example plan, expected once" % (old, found))
    text = text.replace(old, new)
open(sys.argv[2], "w", encoding="utf-8").write(text)
EOF

# One port for every server of the run, so that the stores can be made before any is measured.
start_server "$work/probe" 0
stop_server
fixed_port=$port

# A store per measurement of the daemon: the plan applied, the customers imported.
echo "smtp_send: preparing $runs x ($connections_list) stores..." >&2
for run in $(seq "$runs"); do
  for connections in $connections_list; do
    dir=$work/daemon-$run-$connections
    mkdir -p "$dir"
    sed -e "s/__PORT__/$fixed_port/" -e "s/__CONNECTIONS__/$connections/" "$work/plan.toml.in" > "$dir/plan.toml"
    "$bp" --data "$dir/data" plan apply "$dir/plan.toml" --clock-at 2026-08-01T00:00:00Z > /dev/null
    "$bp" --data "$dir/data" customers import "$work/customers.csv" --clock-at 2026-08-20T00:00:00Z > /dev/null
  done
done

# The figures of the server in DIR: "count first last rate window".
figures() {
  "$python" - "$1/out/stats.json" <<'EOF'
import json, sys
stats = json.load(open(sys.argv[1]))
count, first, last = stats["count"], stats["first"], stats["last"]
window = (last - first) if count > 1 else 0.0
rate = count / window if window > 0 else 0.0
print("%d %.6f %.6f %.0f %.3f" % (count, first or 0, last or 0, rate, window))
EOF
}

# Checks that the server in DIR received CUSTOMERS messages, each key once, and (with a store)
# that the store records a mail MessageSent for exactly those keys. Prints "ok" or why not.
check() { # DIR [DATA]
  if [ $# -gt 1 ]; then
    "$bp" --data "$2" export --out "$1/export.jsonl" > /dev/null
  fi
  "$python" - "$customers" "$1/out/keys.txt" "${2:+$1/export.jsonl}" <<'EOF'
import collections, json, sys
expected, keys_file, export = int(sys.argv[1]), sys.argv[2], sys.argv[3]
keys = open(keys_file, encoding="utf-8").read().split()
twice = [key for key, seen in collections.Counter(keys).items() if seen > 1]
problems = []
if len(keys) != expected:
    problems.append("%d received, expected %d" % (len(keys), expected))
if twice:
    problems.append("%d keys received more than once" % len(twice))
if export:
    sent = []
    for line in open(export, encoding="utf-8"):
        event = json.loads(line)
        if event.get("event_type") == "MessageSent" and event["payload"].get("channel") == "mail":
            sent.append(event["payload"]["key"])
    if len(sent) != expected:
        problems.append("%d mail MessageSent recorded, expected %d" % (len(sent), expected))
    if set(sent) != set(keys):
        problems.append("%d received without a MessageSent, %d recorded and not received"
                        % (len(set(keys) - set(sent)), len(set(sent) - set(keys))))
print("; ".join(problems) if problems else "ok")
EOF
}

ticks=$(getconf CLK_TCK)
results=$work/results
: > "$results"
failed=0
for run in $(seq "$runs"); do
  for connections in $connections_list; do
    # The daemon.
    dir=$work/daemon-$run-$connections
    start_server "$dir/server" "$fixed_port"
    before=$(server_ticks)
    echo "smtp_send: round $run, daemon, $connections connection(s)..." >&2
    started=$(date +%s.%N)
    status=0
    /usr/bin/time -f "%e %U %S %M" -o "$dir/time" timeout 900 "$bp" --data "$dir/data" run \
      --clock-at "$warm_up" --until "$warm_up" --public-url http://127.0.0.1:1 2> "$dir/daemon.log" || status=$?
    server_cpu=$(( $(server_ticks) - before ))
    stop_server
    if [ "$status" != 0 ]; then
      tail -20 "$dir/daemon.log" >&2
      echo "smtp_send: the daemon exited with $status" >&2
      exit 1
    fi
    read -r count first last rate window < <(figures "$dir/server")
    read -r wall user system peak < "$dir/time"
    verdict=$(check "$dir/server" "$dir/data")
    [ "$verdict" = ok ] || failed=1
    to_first=$(awk -v a="$started" -v b="$first" 'BEGIN {printf "%.2f", b - a}')
    whole=$(awk -v n="$count" -v t="$wall" 'BEGIN {printf "%.0f", n / t}')
    cpu=$(awk -v u="$user" -v s="$system" 'BEGIN {printf "%.2f", u + s}')
    scpu=$(awk -v t="$server_cpu" -v hz="$ticks" 'BEGIN {printf "%.2f", t / hz}')
    echo "| daemon | $connections | $run | $count | $window s | **$rate** | $wall s ($whole/s), first mail after $to_first s | $cpu s, $((peak / 1024)) MiB | $scpu s | $verdict |" >> "$results"

    # The baseline.
    dir=$work/bare-$run-$connections
    start_server "$dir/server" "$fixed_port"
    before=$(server_ticks)
    echo "smtp_send: round $run, bare lettre, $connections connection(s)..." >&2
    /usr/bin/time -f "%e %U %S %M" -o "$dir/time" timeout 900 \
      "$bare" "127.0.0.1:$fixed_port" "$connections" "$work/recipients.tsv" > "$dir/said.txt"
    server_cpu=$(( $(server_ticks) - before ))
    stop_server
    read -r count first last rate window < <(figures "$dir/server")
    read -r wall user system peak < "$dir/time"
    own=$(sed -n 's/.*per_second=\([0-9]*\).*/\1/p' "$dir/said.txt")
    verdict=$(check "$dir/server")
    [ "$verdict" = ok ] || failed=1
    cpu=$(awk -v u="$user" -v s="$system" 'BEGIN {printf "%.2f", u + s}')
    scpu=$(awk -v t="$server_cpu" -v hz="$ticks" 'BEGIN {printf "%.2f", t / hz}')
    echo "| bare lettre | $connections | $run | $count | $window s | **$rate** | $wall s (its own count: $own/s) | $cpu s, $((peak / 1024)) MiB | $scpu s | $verdict |" >> "$results"

    [ -n "${SMTP_STOCK:-}" ] || continue
    dir=$work/stock-$run-$connections
    start_server "$dir/server" "$fixed_port"
    echo "smtp_send: round $run, bare lettre --stock, $connections connection(s)..." >&2
    timeout 3600 "$bare" "127.0.0.1:$fixed_port" "$connections" "$work/recipients.tsv" --stock > "$dir/said.txt"
    stop_server
    read -r count first last rate window < <(figures "$dir/server")
    verdict=$(check "$dir/server")
    [ "$verdict" = ok ] || failed=1
    echo "| bare lettre --stock (Nagle on) | $connections | $run | $count | $window s | **$rate** | | | | $verdict |" >> "$results"
  done
done

echo
echo "$customers messages a measurement, server tests/smtp_server.py --discard (aiosmtpd), $(nproc) cores, $runs round(s)"
echo
echo "| sender | connections | round | received | first to last | mails/s | whole process | its CPU, peak RSS | server CPU | check |"
echo "|---|---|---|---|---|---|---|---|---|---|"
cat "$results"
if [ -n "${SMTP_KEEP:-}" ]; then
  cp -r "$work" "$SMTP_KEEP"
  echo "smtp_send: kept in $SMTP_KEEP" >&2
fi
if [ "$failed" != 0 ]; then
  echo "smtp_send: a check failed (the last column)" >&2
  exit 1
fi
