#!/usr/bin/env bash
# CPU per dashboard request, server and PostgreSQL, for two builds of Passerelle in alternating
# pairs: how a change is measured before it lands (deploy/bench/HISTORY.md). Each run starts a
# fresh server from the binary given (raw mode: response cache off; one async worker, four
# database connections, as run.sh), warms it up for 2 s, then runs dashboards for DURATION
# seconds, at saturation (32 closed loops) or, with RATE=N, open-loop at N requests a second (as
# the climbs to equal p99 do), and reads from /proc the CPU time the server and every PostgreSQL
# process took. Prints one line per run, then the medians of each binary. Each line also gives
# the load generator's own CPU per request, the three together ("machine"), the context switches
# per request of the server's threads and of PostgreSQL's processes, and the cores left idle.
#
#   cp target/release/passerelle /tmp/before     # build and copy each side first
#   bash deploy/bench/cpu.sh /tmp/before target/release/passerelle        # 5 pairs of 10 s
#   PAIRS=3 DURATION=5 bash deploy/bench/cpu.sh /tmp/before /tmp/after
#   RATE=1300 PAIRS=3 bash deploy/bench/cpu.sh /tmp/before /tmp/after    # open-loop
#
# Needs the bench database run.sh seeds (passerelle_bench, `PHASES=main` or `PHASES=peer` once)
# and the load generator (`cargo bench --locked --bench load --no-run`).
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BINARY AFTER_BINARY" >&2; exit 2; }
PAIRS="${PAIRS:-5}"
DURATION="${DURATION:-10}"
RATE="${RATE:-0}"
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

switches() { # pids: voluntary and involuntary context switches of every thread
  local t=0 p f
  for p in "$@"; do
    for f in /proc/"$p"/task/*/status; do
      t=$((t + $(awk '/ctxt_switches/ {s += $2} END {print s + 0}' "$f" 2>/dev/null || echo 0)))
    done
  done
  echo "$t"
}

idle() { awk '/^cpu / {print $5 + $6}' /proc/stat; } # idle and iowait ticks, all cores

measure() { # label binary
  start "$2"
  [ $(( $(date +%s) - MINTED )) -lt 600 ] || mint "$2"
  "$LOAD" --url "http://127.0.0.1:$PORT/graphql" --body "$BODY" --rate 0 --concurrency 32 \
    --duration 2 --warmup 0 --tokens-file "$WORK/tokens" --label warm-up >/dev/null
  local pg s0 p0 w0 q0 i0 out s1 p1 w1 q1 i1
  pg=$(pgrep -d' ' -x postgres || pgrep -d' ' postgres)
  s0=$(ticks "$SERVER"); p0=$(ticks $pg); w0=$(switches "$SERVER"); q0=$(switches $pg); i0=$(idle)
  # The load generator's own CPU time is read from its rusage, by a parent that starts only it.
  out=$(python3 - "$LOAD" "$PORT" "$BODY" "$RATE" "$DURATION" "$WORK/tokens" "$1" "$SERVER" <<'PY'
import json, resource, subprocess, sys
load, port, body, rate, duration, tokens, label, pid = sys.argv[1:]
loops = ["--concurrency", "32"] if rate == "0" else []
out = subprocess.run([load, "--url", f"http://127.0.0.1:{port}/graphql", "--body", body,
                      "--rate", rate, "--duration", duration, "--warmup", "0",
                      "--tokens-file", tokens, "--label", label, "--pid", pid, *loops],
                     check=True, capture_output=True, text=True).stdout
r = resource.getrusage(resource.RUSAGE_CHILDREN)
result = json.loads(out)
result["load_cpu_s"] = r.ru_utime + r.ru_stime
print(json.dumps(result))
PY
)
  pg=$(pgrep -d' ' -x postgres || pgrep -d' ' postgres)
  s1=$(ticks "$SERVER"); p1=$(ticks $pg); w1=$(switches "$SERVER"); q1=$(switches $pg); i1=$(idle)
  stop
  python3 - "$1" "$out" $((s1 - s0)) $((p1 - p0)) $((w1 - w0)) $((q1 - q0)) $((i1 - i0)) \
    "$(getconf CLK_TCK)" "$DURATION" <<'PY' | tee -a "$WORK/runs"
import json, sys
label, out = sys.argv[1], json.loads(sys.argv[2])
server, pg, server_sw, pg_sw, idle, hz = map(int, sys.argv[3:9])
duration = float(sys.argv[9])
n = out["requests"]
ms = lambda ticks: ticks * 1000 / hz / n
load = out["load_cpu_s"] * 1000 / n
print(f"{label}\t{out['rps']:.0f} req/s\tp99 {out['p99_ms']:.1f} ms\terrors {out['errors']}\t"
      f"server {ms(server):.3f} ms\tpostgres {ms(pg):.3f} ms\ttotal {ms(server + pg):.3f} ms/request\t"
      f"load {load:.3f} ms\tmachine {ms(server + pg) + load:.3f} ms\t"
      f"switches {server_sw / n:.1f}/{pg_sw / n:.1f}\tidle {idle / hz / duration:.2f} cores")
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
    runs.setdefault(f[0], []).append(tuple(float(f[i].split()[n]) for i, n in
                                           ((1, 0), (2, 1), (4, 1), (6, 1), (8, 1))))
for label, rows in runs.items():
    rps, p99, server, total, machine = (statistics.median(c) for c in zip(*rows))
    print(f"median {label}: {rps:.0f} req/s, p99 {p99:.1f} ms, server {server:.3f} ms, "
          f"server and postgres {total:.3f} ms, with the load generator {machine:.3f} ms per request")
PY
