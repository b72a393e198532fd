#!/usr/bin/env bash
# Load benchmark: Passerelle (release build, PostgreSQL, authentication on: every request carries
# a bearer token, taken in turn from a set of freshly minted tokens) under fixed rates and at
# saturation, PostGraphile beside it on the same data, and how latency and SQL statements per
# request grow with page size and with data scale. Writes deploy/bench/results/{results.jsonl,
# report.md,latency.svg}.
#
#   bash deploy/bench/run.sh                       # the defaults below, 17 to 26 minutes after the build
#   SCALE=0.01 SCALES=0.01 DURATION=5 bash deploy/bench/run.sh   # a quick look
#
# Scenarios: (a) a partner dashboard (a page of actions with outcomes and partners), (b) a
# researcher aggregate, (c) a mobile persisted query sent by hash (GET, APQ), (d) `{ __typename }`
# as the floor. Needs PostgreSQL on 127.0.0.1:5432 (trust auth for postgres) and, for the peer,
# node + npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE="${SCALE:-0.1}"              # main runs: 10 partners, 10k actions, 100k outcomes
SCALES="${SCALES:-0.01 0.1 1}"     # data-scale sweep: 1k to 100k actions, 10k to 1M outcomes
DURATION="${DURATION:-10}"
RATES="${RATES:-100 200 300 400 600 800}"  # fixed rates for Passerelle's dashboard (latency, RSS)
# Throughput at equal p99: each side climbs through rates until one misses the SLO (p99 over
# SLO_MS, any error, or under 95% of the rate offered); ROUNDS rounds, the two sides in turn.
# Each side's rates are FRACTIONS of its own throughput at saturation in the pairs (their
# median), so the climb resolves to 5% on a fast machine and a slow one alike: a fixed grid
# (100, 150... 1,600) measured its own steps, and on a slow machine PostGraphile missed at its
# first step. SLO_RATES, if set, is used for both sides instead.
# The last steps are there for a side whose open-loop capacity exceeds its closed-loop one (run Z:
# PostGraphile passed 120% of its pair median, so its climb gave only a lower bound).
FRACTIONS="${FRACTIONS:-0.3 0.5 0.6 0.7 0.75 0.8 0.85 0.9 0.95 1.0 1.05 1.1 1.2 1.3 1.4 1.5 1.75 2.0}"
SLO_RATES="${SLO_RATES:-}"
SLO_MS="${SLO_MS:-100}"
ROUNDS="${ROUNDS:-3}"
FLOOR_RATES="${FLOOR_RATES:-1000 2000}"
TOKENS="${TOKENS:-256}"
PAIRS="${PAIRS:-3}"                # alternating pairs for the ratios (APQ vs floor, Passerelle vs peer)
PHASES="${PHASES:-main peer scales}"  # a subset re-runs those phases, appending to results.jsonl
phase() { [[ " $PHASES " == *" $1 "* ]]; }
PG_ADMIN="${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="passerelle_bench"
# No TLS on loopback, for Passerelle and the peer alike.
PG_URL="postgres://postgres@127.0.0.1:5432/$DB?sslmode=disable"
WORKERS=$(( $(nproc) / 2 )); [ "$WORKERS" -ge 1 ] || WORKERS=1
PORT=18090
PEER_PORT=18091
TARGET="${CARGO_TARGET_DIR:-target}"
OUT=deploy/bench/results
WORK=$(mktemp -d)
mkdir -p "$OUT"
phase main && : > "$OUT/results.jsonl"

log() { printf '==> %s\n' "$*" >&2; }
stop_server() { [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null; SERVER=; true; }
cleanup() { stop_server; [ -n "${PEER:-}" ] && kill "$PEER" 2>/dev/null; rm -rf "$WORK"; true; }
trap cleanup EXIT

log "building (release)"
cargo build --release --locked --quiet --bin passerelle
cargo bench --locked --bench load --no-run --quiet 2>/dev/null
LOAD=$(ls -t "$TARGET"/release/deps/load-* | grep -v '\.d$' | head -1)
BIN="$TARGET/release/passerelle"

seed() { # $1 = scale
  log "database $DB at scale $1"
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
  DATABASE_URL="$PG_URL" "$BIN" seed --synthetic --scale "$1" >&2
  DATABASE_URL="$PG_URL" "$BIN" seed >&2
  # Vacuumed now, so autovacuum has nothing to catch up on while the runs measure.
  psql -q "$PG_URL" -c "VACUUM ANALYZE" >/dev/null
  # Which scale it holds, for a later run of the peer phase alone (seeded_at).
  psql -q "$PG_ADMIN" -c "COMMENT ON DATABASE $DB IS 'scale $1'"
}
# The scale the bench database was seeded at, or nothing when there is none.
seeded_at() {
  psql -Atq "$PG_ADMIN" -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$DB'" \
    | sed -n 's/^scale //p'
}

# $1 = "raw" (response cache off: every request runs its queries) or "default" (as shipped).
start_server() {
  MODE=$1
  stop_server
  if curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz"; then
    log "port $PORT is taken by another process: stop it first"; exit 1
  fi
  # The load comes from one address: rate limits off. Admission control as shipped. Four
  # database connections, two per core: PostgreSQL runs on the same two cores, and with 16
  # the server peaked 8 to 10 MiB higher over capacity and served no more.
  # One async worker per two cores: PostgreSQL and the load generator share the machine, and
  # the server's database work runs on threads of its own (on 2 cores, one worker took 10-17%
  # less CPU per dashboard than two, at the same throughput).
  { echo "worker_threads = $WORKERS"; echo "[rate_limit]"; echo "enabled = false"; } > "$WORK/bench.toml"
  [ "$1" = raw ] && sed -i '1i response_cache_entries = 0' "$WORK/bench.toml"
  DATABASE_URL="$PG_URL" PASSERELLE_LISTEN="127.0.0.1:$PORT" PASSERELLE_LOG_LEVEL=warn \
    PASSERELLE_DB_MAX_CONNECTIONS=4 "$BIN" --config "$WORK/bench.toml" serve >/dev/null 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do
    kill -0 "$SERVER" 2>/dev/null || { log "the server exited"; exit 1; }
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return
    sleep 0.1
  done
  log "the server did not start"; exit 1
}

# Mints $TOKENS access tokens for a new client of synthetic-0000 with scopes $2 into file $1.
mint() {
  local creds id secret
  creds=$(DATABASE_URL="$PG_URL" "$BIN" client create --partner synthetic-0000 --scopes "$2")
  id=$(awk '/^client_id:/ {print $2}' <<<"$creds")
  secret=$(awk '/^client_secret:/ {print $2}' <<<"$creds")
  python3 - "$id" "$secret" "$TOKENS" "http://127.0.0.1:$PORT/oauth/token" > "$1" <<'PY'
import base64, json, sys, urllib.request
client, secret, n, url = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
for _ in range(n):
    req = urllib.request.Request(url, data=b"grant_type=client_credentials",
                                 headers={"Authorization": f"Basic {basic}"})
    print(json.load(urllib.request.urlopen(req))["access_token"])
PY
}

dashboard() { # $1 = page size
  printf '{"query":"query Dashboard($p: [String!]) { actions(first: %s, filter: { partners: $p }) { nodes { id title startsOn outcomes { indicator value unit } partners { role actor { name } } } pageInfo { hasNextPage endCursor } } }","variables":{"p":["synthetic-0000"]}}' "$1"
}
RESEARCH='{"query":"query Research { researchAggregate(by: PARTNER) { minCell cells { key suppressed records sum } total { suppressed records sum } } }"}'
FLOOR='{"query":"{ __typename }"}'

statements() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^passerelle_sql_statements_total/ {print $2}'; }
# SQL statements of one request with a token already used once (its session checked and
# remembered, as for every request after a token's first).
statements_of() { # body
  local auth="authorization: Bearer $(head -1 "$WORK/read.tokens")" before after
  curl -s "$GQL" -H 'content-type: application/json' -H "$auth" -d "$1" >/dev/null
  before=$(statements)
  curl -s "$GQL" -H 'content-type: application/json' -H "$auth" -d "$1" >/dev/null
  after=$(statements)
  echo $((after - before))
}

run() { # label url body rate tokens-file [extra args...]
  local label=$1 url=$2 body=$3 rate=$4 tokens=$5; shift 5
  local auth=() stages=()
  [ -n "$tokens" ] && auth=(--tokens-file "$tokens")
  # Passerelle's runs also record where its time went (its stage histograms, from /metrics).
  [ -z "${MEASURED:-}" ] && stages=(--metrics "http://127.0.0.1:$PORT/metrics")
  # Each run on a fresh Passerelle process, so its peak RSS is its own, not an earlier run's.
  [ -z "${MEASURED:-}" ] && [ -n "${MODE:-}" ] && start_server "$MODE"
  "$LOAD" --url "$url" --body "$body" --rate "$rate" --duration "$DURATION" --warmup 2 \
    --pid "${MEASURED:-$SERVER}" --label "$label" "${auth[@]}" "${stages[@]}" "$@" | tee -a "$OUT/results.jsonl" >&2
}

GQL="http://127.0.0.1:$PORT/graphql"
if phase main; then
seed "$SCALE"
start_server raw
log "minting $TOKENS tokens per scope set"
mint "$WORK/read.tokens" "read"
mint "$WORK/research.tokens" "research"

log "raw execution (response cache off)"
for rate in $FLOOR_RATES; do run "floor@$rate" "$GQL" "$FLOOR" "$rate" "$WORK/read.tokens"; done
run "floor@max" "$GQL" "$FLOOR" 0 "$WORK/read.tokens" --concurrency 32
for rate in $RATES; do run "dashboard@$rate" "$GQL" "$(dashboard 20)" "$rate" "$WORK/read.tokens"; done
run "dashboard@max" "$GQL" "$(dashboard 20)" 0 "$WORK/read.tokens" --concurrency 32
run "research@max" "$GQL" "$RESEARCH" 0 "$WORK/research.tokens" --concurrency 32

log "page size scaling (statements per request from /metrics)"
for size in 1 10 50 100; do
  echo "{\"label\":\"statements@page$size\",\"statements\":$(statements_of "$(dashboard "$size")")}" | tee -a "$OUT/results.jsonl" >&2
  run "dashboard-page$size@max" "$GQL" "$(dashboard "$size")" 0 "$WORK/read.tokens" --concurrency 16
done

log "as shipped (response cache on): the mobile persisted query by hash"
start_server default
QUERY=$(dashboard 20 | python3 -c 'import json,sys; print(json.load(sys.stdin)["query"])')
HASH=$(printf '%s' "$QUERY" | sha256sum | cut -d' ' -f1)
EXT="{\"persistedQuery\":{\"version\":1,\"sha256Hash\":\"$HASH\"}}"
VARS='{"p":["synthetic-0000"]}'
# Registered once with its text, as an Apollo client does after PERSISTED_QUERY_NOT_FOUND.
python3 - "$QUERY" "$EXT" "$VARS" > "$WORK/register.json" <<'PY'
import json, sys
print(json.dumps({"query": sys.argv[1], "extensions": json.loads(sys.argv[2]), "variables": json.loads(sys.argv[3])}))
PY
curl -sf "$GQL" -H 'content-type: application/json' -H "authorization: Bearer $(head -1 "$WORK/read.tokens")" \
  -d @"$WORK/register.json" >/dev/null
APQ_URL="$GQL?$(python3 -c 'import sys, urllib.parse as u; print(u.urlencode({"operationName": "Dashboard", "variables": sys.argv[2], "extensions": sys.argv[1]}))' "$EXT" "$VARS")"
FLOOR_HASH=$(printf '{ __typename }' | sha256sum | cut -d' ' -f1)
FLOOR_EXT="{\"persistedQuery\":{\"version\":1,\"sha256Hash\":\"$FLOOR_HASH\"}}"
curl -sf "$GQL" -H 'content-type: application/json' -d "{\"query\":\"{ __typename }\",\"extensions\":$FLOOR_EXT}" >/dev/null
FLOOR_URL="$GQL?$(python3 -c 'import sys, urllib.parse as u; print(u.urlencode({"extensions": sys.argv[1]}))' "$FLOOR_EXT")"
# As a mobile client sends them: GET, and accepting gzip (as every mobile HTTP stack does).
PREFLIGHT=(--method GET --header "apollo-require-preflight: true" --header "accept-encoding: gzip")
for rate in $FLOOR_RATES; do
  run "floor-get@$rate" "$FLOOR_URL" "" "$rate" "$WORK/read.tokens" "${PREFLIGHT[@]}"
  run "apq-dashboard@$rate" "$APQ_URL" "" "$rate" "$WORK/read.tokens" "${PREFLIGHT[@]}"
done
run "floor-get@max" "$FLOOR_URL" "" 0 "$WORK/read.tokens" --concurrency 32 "${PREFLIGHT[@]}"
run "apq-dashboard@max" "$APQ_URL" "" 0 "$WORK/read.tokens" --concurrency 32 "${PREFLIGHT[@]}"
# This machine's speed drifts by tens of percent within minutes: ratios are taken from runs
# that alternate, each pair measured in the same period.
for i in $(seq 1 "$PAIRS"); do
  run "floor-get-ab$i@max" "$FLOOR_URL" "" 0 "$WORK/read.tokens" --concurrency 32 "${PREFLIGHT[@]}"
  run "apq-dashboard-ab$i@max" "$APQ_URL" "" 0 "$WORK/read.tokens" --concurrency 32 "${PREFLIGHT[@]}"
done
run "research-cached@max" "$GQL" "$RESEARCH" 0 "$WORK/research.tokens" --concurrency 32
stop_server
fi

if phase peer && command -v npm >/dev/null; then
  # Run alone (PHASES=peer), it measures the main phase's database: seeded now if this machine
  # has none at $SCALE (a fresh machine, or a scale sweep ran last).
  phase main || [ "$(seeded_at)" = "$SCALE" ] || seed "$SCALE"
  log "peer: PostGraphile on the same database"
  (cd deploy/bench && { [ -d node_modules ] || npm ci --silent --no-audit --no-fund; })
  deploy/bench/node_modules/.bin/postgraphile -c "$PG_URL" --schema public --port "$PEER_PORT" \
    --disable-query-log >/dev/null 2>&1 &
  PEER=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null -X POST "http://127.0.0.1:$PEER_PORT/graphql" -H 'content-type: application/json' -d '{"query":"{__typename}"}' && break; sleep 0.2; done
  MEASURED=$(pgrep -P "$PEER" | head -1 || true); MEASURED=${MEASURED:-$PEER}
  # The same dashboard: a page of the partner's public actions with outcomes and partners.
  PEER_Q='{"query":"query Dashboard($p: String!) { allActions(first: 20, orderBy: [TITLE_ASC, ID_ASC], condition: { ownerPartnerId: $p, visibility: \"public\" }) { nodes { id title startsOn outcomesByActionId { nodes { indicator value unit } } partnershipsByActionId { nodes { partnershipMembersByPartnershipId { nodes { role actorByActorId { name } } } } } } pageInfo { hasNextPage endCursor } } }","variables":{"p":"synthetic-0000"}}'
  run "peer-dashboard@max" "http://127.0.0.1:$PEER_PORT/graphql" "$PEER_Q" 0 "" --concurrency 32
  # Alternating pairs at saturation, Passerelle (response cache off, fresh tokens) then the peer.
  PEER_PID=$MEASURED; MEASURED=
  start_server raw
  mint "$WORK/read.tokens" "read"
  for i in $(seq 1 "$PAIRS"); do
    run "dashboard-ab$i@max" "$GQL" "$(dashboard 20)" 0 "$WORK/read.tokens" --concurrency 32
    MEASURED=$PEER_PID run "peer-dashboard-ab$i@max" "http://127.0.0.1:$PEER_PORT/graphql" "$PEER_Q" 0 "" --concurrency 32
  done
  # Equal p99: the highest rate each side sustains within the SLO, climbing until a miss.
  within_slo() { # rate: the last run kept up, without errors, p99 within the SLO
    tail -1 "$OUT/results.jsonl" | python3 -c 'import json, sys
r = json.loads(sys.stdin.read()); rate, slo = float(sys.argv[1]), float(sys.argv[2])
sys.exit(0 if r["errors"] == 0 and r["p99_ms"] <= slo and r["rps"] >= 0.95 * rate else 1)' "$1" "$SLO_MS"
  }
  # Rates from the median of the last $PAIRS pair runs labelled $1-abN@max.
  grid() {
    python3 - "$OUT/results.jsonl" "$1" "$PAIRS" $FRACTIONS <<'PY'
import json, sys
path, prefix, pairs = sys.argv[1], sys.argv[2] + "-ab", int(sys.argv[3])
runs = [json.loads(l) for l in open(path) if l.strip()]
rps = sorted([r["rps"] for r in runs if r["label"].startswith(prefix)][-pairs:])
median = rps[len(rps) // 2]
print(" ".join(str(max(1, round(median * float(f)))) for f in sys.argv[4:]))
PY
  }
  OUR_RATES=${SLO_RATES:-$(grid dashboard)}
  PEER_RATES=${SLO_RATES:-$(grid peer-dashboard)}
  log "equal p99: Passerelle climbs $OUR_RATES; PostGraphile $PEER_RATES (req/s)"
  for i in $(seq 1 "$ROUNDS"); do
    # Fresh tokens each round: a round can outlast a token (token_ttl_secs, 15 minutes).
    mint "$WORK/read.tokens" "read"
    for rate in $OUR_RATES; do
      run "slo$i-dashboard@$rate" "$GQL" "$(dashboard 20)" "$rate" "$WORK/read.tokens"
      within_slo "$rate" || break
    done
    for rate in $PEER_RATES; do
      MEASURED=$PEER_PID run "slo$i-peer-dashboard@$rate" "http://127.0.0.1:$PEER_PORT/graphql" "$PEER_Q" "$rate" ""
      within_slo "$rate" || break
    done
  done
  stop_server
  kill "$PEER" 2>/dev/null; PEER=; MEASURED=
fi
MODE=

phase scales || SCALES=""
[ -n "$SCALES" ] && log "data scale sweep: $SCALES"
for scale in $SCALES; do
  seed "$scale"
  start_server raw
  mint "$WORK/read.tokens" "read"
  mint "$WORK/research.tokens" "research"
  n=$(statements_of "$(dashboard 20)")
  actions=$(psql -tA "$PG_URL" -c "SELECT count(*) FROM actions")
  outcomes=$(psql -tA "$PG_URL" -c "SELECT count(*) FROM outcomes")
  echo "{\"label\":\"scale$scale\",\"scale\":$scale,\"actions\":$actions,\"outcomes\":$outcomes,\"statements\":$n}" | tee -a "$OUT/results.jsonl" >&2
  run "dashboard-scale$scale@100" "$GQL" "$(dashboard 20)" 100 "$WORK/read.tokens"
  run "dashboard-scale$scale@max" "$GQL" "$(dashboard 20)" 0 "$WORK/read.tokens" --concurrency 32
  run "research-scale$scale@max" "$GQL" "$RESEARCH" 0 "$WORK/research.tokens" --concurrency 8
done
stop_server

python3 deploy/bench/report.py "$OUT/results.jsonl" "$OUT" "$SLO_MS"
log "report: $OUT/report.md, plot: $OUT/latency.svg"
