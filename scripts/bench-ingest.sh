#!/usr/bin/env bash
# Ingest benchmarks (issue #7), all in one run on this machine:
#   1. single-event requests (wrk, keep-alive): `sundial serve` POST /api/v1/open_app vs a
#      bare axum endpoint that answers 200 (crates/server/examples/hello.rs);
#   2. batched ingest (100 events per request, embedded defaults, durable) for
#      BATCH_SECS seconds, devices cycling over 1,000,000 ids: events/s, the aggregator's
#      lag and drain time, peak RSS;
#   3. p99 request latency at half the batched rate (open-loop, examples/loadgen.rs).
# Usage: bash scripts/bench-ingest.sh            (SINGLE_SECS=20 BATCH_SECS=60 HALF_SECS=30)
# Needs wrk (apt-get install -y wrk). Servers listen on 127.0.0.1 only and are stopped at exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
SINGLE_SECS=${SINGLE_SECS:-20}
BATCH_SECS=${BATCH_SECS:-60}
HALF_SECS=${HALF_SECS:-30}
TARGET=${CARGO_TARGET_DIR:-target}
command -v wrk >/dev/null || { echo "wrk is required: apt-get install -y wrk" >&2; exit 2; }

cargo build --release --locked -p sundial --bins >&2
cargo build --release --locked -p sundial-server --examples >&2
BIN=$TARGET/release/sundial
HELLO=$TARGET/release/examples/hello
LOADGEN=$TARGET/release/examples/loadgen
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT

"$BIN" app create Bench --data-dir "$tmp/data" --json > "$tmp/app.json"
KEY=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['app_key'])" "$tmp/app.json")
"$BIN" --log-level warn serve --data-dir "$tmp/data" --listen 127.0.0.1:18080 > "$tmp/serve.out" 2> "$tmp/serve.err" &
SERVE=$!; pids+=("$SERVE")
"$HELLO" 127.0.0.1:18090 > /dev/null &
pids+=("$!")
sleep 1
NOW=$(date +%s%3N)

cat > "$tmp/single.lua" <<LUA
local n = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil,
    '{"app_key":"$KEY","device_id":"s' .. (n % 1000000) .. '","ts":$NOW,"platform":"ios"}')
end
LUA
cat > "$tmp/batch.lua" <<LUA
local n = 0
local thread_id = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  n = n + 1
  local parts = {}
  for i = 1, 100 do
    local d = ((n * 100 + i) * 7919) % 1000000
    if i % 2 == 0 then
      parts[i] = '{"type":"open_app","ts":$NOW,"device_id":"d' .. d .. '"}'
    else
      parts[i] = '{"type":"usage_time","ts":$NOW,"device_id":"d' .. d .. '","duration_secs":30}'
    end
  end
  return wrk.format(nil, nil, nil,
    '{"app_key":"$KEY","platform":"android","app_version":"2.1.0","events":[' .. table.concat(parts, ",") .. ']}')
end
LUA

rps() { awk '/Requests\/sec/ {print $2}' "$1"; }
lat() { awk -v p="$2" '$1 == p {print $2}' "$1"; }
metric() { curl -s http://127.0.0.1:18080/metrics | awk -v m="$1" '$1 == m {print $2}'; }
rss_mb() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$SERVE/status"; }

echo "== load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== 1. single-event requests, wrk -t2 -c64 -d${SINGLE_SECS}s"
wrk -t2 -c64 -d"${SINGLE_SECS}s" --latency -s "$tmp/single.lua" http://127.0.0.1:18090/api/v1/open_app > "$tmp/hello.txt"
wrk -t2 -c64 -d"${SINGLE_SECS}s" --latency -s "$tmp/single.lua" http://127.0.0.1:18080/api/v1/open_app > "$tmp/single.txt"
H=$(rps "$tmp/hello.txt"); S=$(rps "$tmp/single.txt")
echo "bare axum:      $H req/s  p50 $(lat "$tmp/hello.txt" 50%)  p99 $(lat "$tmp/hello.txt" 99%)"
echo "sundial serve:  $S req/s  p50 $(lat "$tmp/single.txt" 50%)  p99 $(lat "$tmp/single.txt" 99%)"
echo "ratio:          $(python3 -c "print(round($S/$H, 3))")"
grep -q "Non-2xx" "$tmp/single.txt" && { echo "non-2xx answers:"; grep "Non-2xx" "$tmp/single.txt"; }

echo "== 2. batched ingest: 100 events per request, wrk -t2 -c32 -d${BATCH_SECS}s"
pos0=$(metric sundial_aggregate_position); pos0=${pos0:-0}
( while kill -0 "$SERVE" 2>/dev/null; do r=$(rss_mb); echo "$r"; sleep 1; done ) > "$tmp/rss.txt" &
RSSMON=$!; pids+=("$RSSMON")
lag_log="$tmp/lag.txt"
( while true; do l=$(metric sundial_bus_lag_messages); echo "${l:-0}"; sleep 2; done ) > "$lag_log" &
LAGMON=$!; pids+=("$LAGMON")
wrk -t2 -c32 -d"${BATCH_SECS}s" --latency -s "$tmp/batch.lua" http://127.0.0.1:18080/api/v1/ingest > "$tmp/batch.txt"
B=$(rps "$tmp/batch.txt")
echo "requests/s:     $B  => events/s $(python3 -c "print(round($B*100))")  p50 $(lat "$tmp/batch.txt" 50%)  p99 $(lat "$tmp/batch.txt" 99%)"
grep -q "Non-2xx" "$tmp/batch.txt" && { echo "non-2xx answers:"; grep "Non-2xx" "$tmp/batch.txt"; }
t0=$(date +%s.%N)
while true; do
  lag=$(metric sundial_bus_lag_messages); lag=${lag:-0}
  [ "${lag%.*}" -le 0 ] && break
  sleep 0.5
done
t1=$(date +%s.%N)
kill "$LAGMON" 2>/dev/null || true
echo "bus lag during the run (messages = requests), max: $(sort -n "$lag_log" | tail -1)"
echo "bus lag every 2 s: $(tr '\n' ' ' < "$lag_log")"
echo "drain after the load stopped: $(python3 -c "print(round($t1-$t0,1))") s"
echo "aggregated events: $(metric sundial_aggregate_events_total)"
kill "$RSSMON" 2>/dev/null || true
echo "peak RSS of sundial serve: $(sort -n "$tmp/rss.txt" | tail -1) MB"

echo "== 3. p99 at half the batched rate (open loop, ${HALF_SECS}s)"
HALF=$(python3 -c "print(max(1, round($B/2)))")
python3 - "$KEY" "$NOW" > "$tmp/body.json" <<'PY'
import json, sys
key, now = sys.argv[1], int(sys.argv[2])
events = [{"type": "open_app" if i % 2 else "usage_time", "ts": now, "device_id": f"h{i}",
           **({} if i % 2 else {"duration_secs": 30})} for i in range(100)]
print(json.dumps({"app_key": key, "platform": "ios", "events": events}))
PY
"$LOADGEN" 127.0.0.1:18080 /api/v1/ingest "$tmp/body.json" "$HALF" "$HALF_SECS" 64
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
