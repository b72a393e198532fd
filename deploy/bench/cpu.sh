#!/usr/bin/env bash
# CPU per dashboard request, server and PostgreSQL, for two builds of Passerelle in alternating
# pairs: how a change is measured before it lands (deploy/bench/HISTORY.md). Each run starts a
# fresh server from the binary given (raw mode: response cache off; one async worker, four
# database connections, as run.sh), warms it up for 2 s, then runs dashboards at saturation (32
# closed loops) for DURATION seconds and reads the CPU time the server and every PostgreSQL
# process took from /proc. Prints one line per run, then the medians of each binary.
#
#   cp target/release/passerelle /tmp/before     # build and copy each side first
#   bash deploy/bench/cpu.sh /tmp/before target/release/passerelle        # 5 pairs of 10 s
#   PAIRS=3 DURATION=5 bash deploy/bench/cpu.sh /tmp/before /tmp/after
#
# Needs the bench database run.sh seeds (passerelle_bench, `PHASES=main` or `PHASES=peer` once)
# and the load generator (`cargo bench --locked --bench load --no-run`).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BINARY AFTER_BINARY" >&2; exit 2; }
PAIRS="${PAIRS:-5}"
DURATION="${DURATION:-10}"
PORT="${PORT:-18090}"
TARGET="${CARGO_TARGET_DIR:-target}"
LOAD=$(ls -t "$TARGET"/release/deps/load-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
[ -n "$LOAD" ] || { echo "no load generator: cargo bench --locked --bench load --no-run" >&2; exit 1; }
source deploy/bench/common.sh
start() { serve "$1"; } # binary

# Tokens for a new client of synthetic-0000 (they live 15 minutes: minted again past 10).
mint() { # binary
  mint_tokens "$1" "$PG_URL" "$PORT" "$WORK/tokens"
  MINTED=$(date +%s)
}
MINTED=0

ticks() { # pids: utime + stime
  local t=0 p
  for p in "$@"; do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}

measure() { # label binary
  start "$2"
  [ $(( $(date +%s) - MINTED )) -lt 600 ] || mint "$2"
  "$LOAD" --url "http://127.0.0.1:$PORT/graphql" --body "$BODY" --rate 0 --concurrency 32 \
    --duration 2 --warmup 0 --tokens-file "$WORK/tokens" --label warm-up >/dev/null
  local pg s0 p0 out s1 p1
  pg=$(pgrep -d' ' -x postgres || pgrep -d' ' postgres)
  s0=$(ticks "$SERVER"); p0=$(ticks $pg)
  out=$("$LOAD" --url "http://127.0.0.1:$PORT/graphql" --body "$BODY" --rate 0 --concurrency 32 \
    --duration "$DURATION" --warmup 0 --tokens-file "$WORK/tokens" --label "$1" --pid "$SERVER")
  s1=$(ticks "$SERVER"); p1=$(ticks $(pgrep -d' ' -x postgres || pgrep -d' ' postgres))
  stop
  python3 - "$1" "$out" $((s1 - s0)) $((p1 - p0)) "$(getconf CLK_TCK)" <<'PY' | tee -a "$WORK/runs"
import json, sys
label, out, server, pg, hz = sys.argv[1], json.loads(sys.argv[2]), *map(int, sys.argv[3:])
n = out["requests"]
ms = lambda ticks: ticks * 1000 / hz / n
print(f"{label}\t{out['rps']:.0f} req/s\tp99 {out['p99_ms']:.1f} ms\terrors {out['errors']}\t"
      f"server {ms(server):.3f} ms\tpostgres {ms(pg):.3f} ms\ttotal {ms(server + pg):.3f} ms/request")
PY
}

for i in $(seq 1 "$PAIRS"); do
  measure before "$1"
  measure after "$2"
done
python3 - "$WORK/runs" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    runs.setdefault(f[0], []).append((float(f[1].split()[0]), float(f[4].split()[1]), float(f[6].split()[1])))
for label, rows in runs.items():
    rps, server, total = (statistics.median(c) for c in zip(*rows))
    print(f"median {label}: {rps:.0f} req/s, server {server:.3f} ms, server and postgres {total:.3f} ms per request")
PY
