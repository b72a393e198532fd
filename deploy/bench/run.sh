#!/usr/bin/env bash
# Load benchmark: Passerelle (release build, PostgreSQL) under fixed rates and at saturation,
# PostGraphile beside it on the same data, and how latency and SQL statements per request grow
# with page size. Writes deploy/bench/results/{results.jsonl,report.md,latency.svg}.
#
#   bash deploy/bench/run.sh                 # scale 0.01 (1 partner, 1k actions, 10k outcomes)
#   SCALE=1 DURATION=20 bash deploy/bench/run.sh
#
# Needs PostgreSQL on 127.0.0.1:5432 (trust auth for postgres) and, for the peer, node + npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
SCALE="${SCALE:-0.01}"
DURATION="${DURATION:-10}"
RATES="${RATES:-250 500 1000}"
PG_ADMIN="${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="passerelle_bench"
PG_URL="postgres://postgres@127.0.0.1:5432/$DB"
PORT=18090
PEER_PORT=18091
OUT=deploy/bench/results
mkdir -p "$OUT"
: > "$OUT/results.jsonl"

log() { printf '==> %s\n' "$*" >&2; }
cleanup() { [ -n "${SERVER:-}" ] && kill "$SERVER" 2>/dev/null; [ -n "${PEER:-}" ] && kill "$PEER" 2>/dev/null; true; }
trap cleanup EXIT

log "building (release)"
cargo build --release --quiet
cargo bench --bench load --no-run --quiet 2>/dev/null
LOAD=$(ls -t target/release/deps/load-* | grep -v '\.d$' | head -1)

log "database $DB at scale $SCALE"
psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
DATABASE_URL="$PG_URL" target/release/passerelle seed --synthetic --scale "$SCALE" >&2
DATABASE_URL="$PG_URL" target/release/passerelle seed >&2
psql -q "$PG_URL" -c "ANALYZE" >/dev/null

log "starting Passerelle on :$PORT"
# The load comes from one address: rate limits off, the response cache off so every request
# runs its queries (a cached answer would measure the cache, not the hub).
cat > "$OUT/bench.toml" <<TOML
response_cache_entries = 0
[rate_limit]
enabled = false
TOML
DATABASE_URL="$PG_URL" PASSERELLE_LISTEN="127.0.0.1:$PORT" PASSERELLE_LOG_LEVEL=warn \
  PASSERELLE_DB_MAX_CONNECTIONS=16 target/release/passerelle --config "$OUT/bench.toml" serve >/dev/null 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break; sleep 0.1; done

dashboard() { # $1 = page size
  printf '{"query":"query Dashboard($p: [String!]) { actions(first: %s, filter: { partners: $p }) { nodes { id title startsOn outcomes { indicator value unit } partners { role actor { name } } } pageInfo { hasNextPage endCursor } } }","variables":{"p":["synthetic-0000"]}}' "$1"
}
FLOOR='{"query":"{ __typename }"}'

statements() { curl -s "http://127.0.0.1:$PORT/metrics" | awk '/^passerelle_sql_statements_total/ {print $2}'; }

run() { # label url body rate [extra args...]
  local label=$1 url=$2 body=$3 rate=$4; shift 4
  "$LOAD" --url "$url" --body "$body" --rate "$rate" --duration "$DURATION" --warmup 2 --pid "$SERVER" --label "$label" "$@" \
    | tee -a "$OUT/results.jsonl" >&2
}

log "fixed rates"
for rate in $RATES; do
  run "floor@$rate" "http://127.0.0.1:$PORT/graphql" "$FLOOR" "$rate"
  run "dashboard@$rate" "http://127.0.0.1:$PORT/graphql" "$(dashboard 20)" "$rate"
done

log "saturation"
run "floor@max" "http://127.0.0.1:$PORT/graphql" "$FLOOR" 0 --concurrency 32
run "dashboard@max" "http://127.0.0.1:$PORT/graphql" "$(dashboard 20)" 0 --concurrency 32

log "page size scaling (statements per request from /metrics)"
for size in 1 10 50 100; do
  before=$(statements)
  curl -s "http://127.0.0.1:$PORT/graphql" -H 'content-type: application/json' -d "$(dashboard "$size")" >/dev/null
  after=$(statements)
  echo "{\"label\":\"statements@page$size\",\"statements\":$((after - before))}" | tee -a "$OUT/results.jsonl" >&2
  run "dashboard-page$size@max" "http://127.0.0.1:$PORT/graphql" "$(dashboard "$size")" 0 --concurrency 16
done

if command -v npm >/dev/null; then
  log "peer: PostGraphile on the same database"
  (cd deploy/bench && { [ -d node_modules ] || npm ci --silent --no-audit --no-fund; })
  deploy/bench/node_modules/.bin/postgraphile -c "$PG_URL" --schema public --port "$PEER_PORT" \
    --disable-query-log >/dev/null 2>&1 &
  PEER=$!
  for _ in $(seq 1 100); do curl -sf -o /dev/null -X POST "http://127.0.0.1:$PEER_PORT/graphql" -H 'content-type: application/json' -d '{"query":"{__typename}"}' && break; sleep 0.2; done
  # The same dashboard: a page of the partner's public actions with outcomes and partners.
  PEER_Q='{"query":"query Dashboard($p: String!) { allActions(first: 20, orderBy: [TITLE_ASC, ID_ASC], condition: { ownerPartnerId: $p, visibility: \"public\" }) { nodes { id title startsOn outcomesByActionId { nodes { indicator value unit } } partnershipsByActionId { nodes { partnershipMembersByPartnershipId { nodes { role actorByActorId { name } } } } } } pageInfo { hasNextPage endCursor } } }","variables":{"p":"synthetic-0000"}}'
  SERVER_SAVED=$SERVER; SERVER=$PEER
  run "peer-dashboard@max" "http://127.0.0.1:$PEER_PORT/graphql" "$PEER_Q" 0 --concurrency 32
  for rate in $RATES; do run "peer-dashboard@$rate" "http://127.0.0.1:$PEER_PORT/graphql" "$PEER_Q" "$rate"; done
  SERVER=$SERVER_SAVED
fi

python3 deploy/bench/report.py "$OUT/results.jsonl" "$OUT"
log "report: $OUT/report.md, plot: $OUT/latency.svg"
