# Sourced by cpu.sh and instructions.sh, from the repository's root, with PORT set: the bench
# database's URL (checked), a work directory removed on exit, the server's settings as run.sh
# gives them (response cache off, one async worker, rate limits off), the dashboard's request,
# and the functions below.
PG_URL="postgres://postgres@127.0.0.1:5432/passerelle_bench?sslmode=disable"
psql -Atq "$PG_URL" -c 'SELECT 1 FROM actions LIMIT 1' >/dev/null 2>&1 \
  || { echo "no bench database: PHASES=main bash deploy/bench/run.sh seeds it" >&2; exit 1; }
WORK=$(mktemp -d)
SERVER=
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null; rm -rf "$WORK"; true; }
trap cleanup EXIT
# One issuer for every build compared (older builds' default; newer ones derive it from `listen`).
printf 'response_cache_entries = 0\nworker_threads = 1\ntoken_issuer = "http://127.0.0.1:8080"\n[rate_limit]\nenabled = false\n' > "$WORK/bench.toml"
BODY='{"query":"query Dashboard($p: [String!]) { actions(first: 20, filter: { partners: $p }) { nodes { id title startsOn outcomes { indicator value unit } partners { role actor { name } } } pageInfo { hasNextPage endCursor } } }","variables":{"p":["synthetic-0000"]}}'

# serve COMMAND...: starts the server (a binary, or a binary under a tool such as valgrind) with
# four database connections, and waits until it is ready.
serve() {
  DATABASE_URL="$PG_URL" PASSERELLE_LISTEN="127.0.0.1:$PORT" PASSERELLE_LOG_LEVEL=warn \
    PASSERELLE_DB_MAX_CONNECTIONS=4 "$@" --config "$WORK/bench.toml" serve >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && return
    kill -0 "$SERVER" 2>/dev/null || break
    sleep 0.1
  done
  echo "the server did not start:" >&2; tail -5 "$WORK/server.log" >&2; exit 1
}
stop() { kill "$SERVER" 2>/dev/null; wait "$SERVER" 2>/dev/null || true; SERVER=; }

# mint_tokens BINARY PG_URL PORT OUT: 256 access tokens (they live 15 minutes) for a new client of
# synthetic-0000 with the read scope, from the server listening on PORT, one per line in OUT.
mint_tokens() {
  local creds id secret
  creds=$(DATABASE_URL="$2" "$1" client create --partner synthetic-0000 --scopes read)
  id=$(awk '/^client_id:/ {print $2}' <<<"$creds")
  secret=$(awk '/^client_secret:/ {print $2}' <<<"$creds")
  python3 - "$id" "$secret" "http://127.0.0.1:$3/oauth/token" > "$4" <<'PY'
import base64, json, sys, urllib.request
client, secret, url = sys.argv[1:]
basic = base64.b64encode(f"{client}:{secret}".encode()).decode()
for _ in range(256):
    req = urllib.request.Request(url, data=b"grant_type=client_credentials",
                                 headers={"Authorization": f"Basic {basic}"})
    print(json.load(urllib.request.urlopen(req))["access_token"])
PY
}
