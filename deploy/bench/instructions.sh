#!/usr/bin/env bash
# Instructions per dashboard request, for builds of Passerelle: how a change of a few percent is
# measured (deploy/bench/HISTORY.md). Throughput on a shared 2-core machine moves by 10-15% from
# one run to the next, which hides such a change; an instruction count does not move: the same
# binary and data give the same count to within 0.1%, whatever else the machine is doing.
#
# Each binary serves under valgrind's callgrind (one async worker, four database connections,
# response cache off, as cpu.sh), answers WARMUP dashboards one after another, then COUNT more
# whose instructions (every thread of the server: async worker, blocking pool, audit writer) are
# counted and divided by COUNT. PostgreSQL's work is not counted: cpu.sh measures it. With TOP=N
# it also prints each binary's N functions with the most instructions of their own.
#
# TOP needs symbols, which release builds strip: build with the profiling profile.
#   cargo build --profile profiling --locked --bin passerelle
#   cp target/profiling/passerelle /tmp/before     # build and copy each side first
#   bash deploy/bench/instructions.sh /tmp/before target/profiling/passerelle
#   TOP=30 bash deploy/bench/instructions.sh target/profiling/passerelle
#
# Needs valgrind, the bench database run.sh seeds (passerelle_bench) and python3.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
WARMUP="${WARMUP:-600}"
COUNT="${COUNT:-300}"
TOP="${TOP:-0}"
PORT="${PORT:-18094}"
source deploy/bench/common.sh

# Tokens for a new client of synthetic-0000, minted by the first binary served natively: under
# valgrind, hashing the client's secret (argon2) for each token would take minutes.
serve "$1"
mint_tokens "$1" "$PG_URL" "$PORT" "$WORK/tokens"
stop

dashboards() { # n: one after another on one connection; fails on any error
  python3 - "$1" "$PORT" "$BODY" "$WORK/tokens" <<'PY'
import http.client, sys
n, port, body, tokens = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode(), sys.argv[4]
tokens = [t.strip() for t in open(tokens) if t.strip()]
c = http.client.HTTPConnection("127.0.0.1", port)
for i in range(n):
    c.request("POST", "/graphql", body, {"content-type": "application/json",
                                         "authorization": "Bearer " + tokens[i % len(tokens)]})
    r = c.getresponse()
    answer = r.read()
    if r.status != 200 or b'"errors"' in answer:
        sys.exit(f"dashboard {i}: HTTP {r.status}: {answer[:300]!r}")
PY
}

for bin in "$@"; do
  out="$WORK/callgrind.out"
  serve valgrind --tool=callgrind --callgrind-out-file="$out" --dump-instr=no "$bin"
  # Every token is verified once in the warm-up (a token's first use checks its signature).
  dashboards "$WARMUP"
  callgrind_control -z "$SERVER" >/dev/null 2>&1
  dashboards "$COUNT"
  callgrind_control -d "$SERVER" >/dev/null 2>&1
  stop
  python3 - "$out.1" "$COUNT" "$TOP" "$bin" <<'PY'
import collections, re, sys
path, count, top, label = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
names, own = {}, collections.Counter()
fn, call = None, False
for line in open(path, errors="replace"):
    # A function's name is given once, where it first appears (as fn= or as cfn=), then its id.
    m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
    if m and m.group(2):
        names[m.group(1)] = m.group(2)
    if line.startswith("fn="):
        fn = names.get(m.group(1), m.group(1))
    elif line.startswith("calls="):
        call = True
    elif line[:1].isdigit() or line[:1] in "+-*":
        parts = line.split()
        if not call and len(parts) >= 2:
            own[fn] += int(parts[1])
        call = False
total = sum(own.values())
print(f"{label}: {total / count:,.0f} instructions per dashboard")
for name, n in own.most_common(top):
    print(f"  {n / count:>10,.0f} {100 * n / total:5.2f}%  {name[:140]}")
PY
done
