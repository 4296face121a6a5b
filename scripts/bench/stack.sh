# Sourced by the benchmark scripts: starts the release binaries on 127.0.0.1 against the
# machine's PostgreSQL (schemas bench_auth and bench_registry) and Redis (prefix bench:),
# mints an application token, and stops and cleans everything on exit.
#
#   bench_start [registry]   auth-service, the gateway (18080, admin 18090) and, with
#                            `registry`, the registry (18082). Without it the gateway's
#                            registry upstream is $GATEWAY_REGISTRY (e.g. a peer backend).
#   bench_token              prints an application token of a new operator.
#   bench_stop               stops them and drops their data (bench_start again: a new stack).
# GATEWAY_BIN: another gateway binary (the code before a change, built elsewhere).
# Sets: work (temp dir), pids (started processes), gateway_pid, registry_pid.

PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
REGISTRY_POOL=${REGISTRY_POOL:-16}    # registry's PostgreSQL connections
GATEWAY_THREADS=${GATEWAY_THREADS:-0}  # gateway proxy services (one thread each); 0: one per core
REGISTRY_THREADS=${REGISTRY_THREADS:-0}  # registry's runtime threads; 0: one per core
GATEWAY_REGISTRY=${GATEWAY_REGISTRY:-127.0.0.1:18082}

log() { echo "[bench] $*" >&2; }
command -v wrk >/dev/null || { log "installing wrk"; apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
./scripts/prereqs.sh services >/dev/null
log "building release binaries"
cargo build --release --workspace --quiet
bin=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release}

work=$(mktemp -d /tmp/rpc-bench.XXXXXX)
pids=()
drop_schemas() {
    psql "$PG_URL" -qc 'DROP SCHEMA IF EXISTS bench_auth CASCADE; DROP SCHEMA IF EXISTS bench_registry CASCADE' >/dev/null 2>&1 || true
}
# Stops what bench_start started and forgets its data (schemas, Redis keys): the next
# bench_start begins with a new, empty registry.
bench_stop() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    pids=()
    drop_schemas
    redis-cli -u "$REDIS_URL" --scan --pattern 'bench:*' | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
}
bench_cleanup() {
    bench_stop
    rm -rf "$work"
}
trap bench_cleanup EXIT
drop_schemas

auth_secret=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
registry_secret=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
export RPC_BOOTSTRAP_ADMIN_EMAIL=bench-admin@example.org RPC_BOOTSTRAP_ADMIN_PASSWORD="bench admin password 42"
export AUTH_SERVICE__LISTEN=127.0.0.1:18081 AUTH_SERVICE__DATABASE__URL="$PG_URL" \
    AUTH_SERVICE__DATABASE__SCHEMA=bench_auth AUTH_SERVICE__REDIS__URL="$REDIS_URL" \
    AUTH_SERVICE__REDIS__PREFIX=bench: AUTH_SERVICE__ASSERTION_SECRET="$auth_secret" AUTH_SERVICE__LOG_FORMAT=json \
    AUTH_SERVICE__KEY_ENCRYPTION_KEYS="bench:$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
export REGISTRY__LISTEN=127.0.0.1:18082 REGISTRY__DATABASE__URL="${REGISTRY_PG_URL:-$PG_URL}" \
    REGISTRY__DATABASE__SCHEMA=bench_registry REGISTRY__DATABASE__MAX_CONNECTIONS=$REGISTRY_POOL \
    REGISTRY__ASSERTION_SECRET="$registry_secret" REGISTRY__LOG_FORMAT=json \
    REGISTRY__WORKER_THREADS=$REGISTRY_THREADS
export GATEWAY__LISTEN=127.0.0.1:18080 GATEWAY__ADMIN_LISTEN=127.0.0.1:18090 \
    GATEWAY__AUTH_SERVICE=127.0.0.1:18081 GATEWAY__REGISTRY="$GATEWAY_REGISTRY" \
    GATEWAY__ASSERTION_SECRETS__AUTH_SERVICE="$auth_secret" \
    GATEWAY__ASSERTION_SECRETS__REGISTRY="$registry_secret" GATEWAY__REDIS__URL="$REDIS_URL" GATEWAY__REDIS__PREFIX=bench: \
    GATEWAY__LOG_FORMAT=json GATEWAY__SERVER__THREADS=$GATEWAY_THREADS \
    GATEWAY__SERVER__PID_FILE="$work/gateway.pid" GATEWAY__SERVER__UPGRADE_SOCK="$work/gateway.sock"
export RUST_LOG=warn

wait_for() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; log "$1 never answered"; exit 1; }

bench_start() {
    "$bin/auth-service" >"$work/auth.log" 2>&1 & pids+=($!); auth_pid=$!
    wait_for http://127.0.0.1:18081/health
    if [ "${1:-}" = registry ]; then
        "$bin/registry" >"$work/registry.log" 2>&1 & pids+=($!); registry_pid=$!
        wait_for http://127.0.0.1:18082/health
    fi
    "${GATEWAY_BIN:-$bin/gateway}" >"$work/gateway.log" 2>&1 & pids+=($!); gateway_pid=$!
    wait_for http://127.0.0.1:18090/health
}

bench_token() {
    python3 - <<'PY'
import json, urllib.request
base = "http://127.0.0.1:18080"
def call(method, path, body=None, headers=None):
    req = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body is not None else None,
                                 headers={"content-type": "application/json", **(headers or {})})
    with urllib.request.urlopen(req) as r:
        return r.headers, json.loads(r.read() or b"null")
def sign_in(email, password):
    h, _ = call("POST", "/api/v1/auth/sign_in", {"email": email, "password": password})
    return {"access-token": h["access-token"], "client": h["client"], "uid": h["uid"]}
admin = sign_in("bench-admin@example.org", "bench admin password 42")
_, op = call("POST", "/admin/operators", {"name": "Bench", "siret": "12345678900011"}, admin)
call("POST", f"/admin/operators/{op['id']}/users", {"email": "ops@bench.example", "password": "bench operator password",
     "role": "operator.admin", "first_name": "B", "last_name": "E"}, admin)
ops = sign_in("ops@bench.example", "bench operator password")
_, app = call("POST", "/applications", {"name": "bench"}, ops)
print(app["token"])
PY
}
