#!/usr/bin/env bash
# Ingestion benchmark (issue 3): journeys/s, p50 and p99 of POST /v3/journeys through
# gateway -> registry -> PostgreSQL, at 64 concurrent clients, with 1 M journeys already stored.
#
#   scripts/bench/ingest.sh            # defaults below; every knob is an environment variable
#
# It builds the release binaries, starts auth-service, registry and the gateway on 127.0.0.1
# (ports 18080-18090) against the machine's PostgreSQL (fresh schemas bench_auth and
# bench_registry, dropped at the end) and Redis (prefix bench:), seeds SEED journeys with SQL,
# creates an operator and an application token through the API, runs wrk for DURATION, then
# checks that every 201 is a stored row. Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

SEED=${SEED:-1000000}                 # journeys stored before the run
CONNECTIONS=${CONNECTIONS:-64}        # concurrent clients
THREADS=${THREADS:-2}                 # wrk threads
DURATION=${DURATION:-30s}
WARMUP=${WARMUP:-5s}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379}
REGISTRY_POOL=${REGISTRY_POOL:-16}    # registry's PostgreSQL connections
GATEWAY_THREADS=${GATEWAY_THREADS:-2}
# REGISTRY_PG_URL overrides PG_URL for the registry alone (e.g. to pass `options=-c ...`);
# BENCH_DEBUG=1 prints wrk's whole output and the first refused answers.

log() { echo "[bench] $*" >&2; }
command -v wrk >/dev/null || { log "installing wrk"; apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
./scripts/prereqs.sh services >/dev/null
log "building release binaries"
cargo build --release --workspace --quiet

work=$(mktemp -d /tmp/rpc-bench.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql "$PG_URL" -qc 'DROP SCHEMA IF EXISTS bench_auth CASCADE; DROP SCHEMA IF EXISTS bench_registry CASCADE' >/dev/null 2>&1 || true
    redis-cli -u "$REDIS_URL" --scan --pattern 'bench:*' | xargs -r redis-cli -u "$REDIS_URL" del >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
psql "$PG_URL" -qc 'DROP SCHEMA IF EXISTS bench_auth CASCADE; DROP SCHEMA IF EXISTS bench_registry CASCADE' >/dev/null

secret=$(head -c 32 /dev/urandom | base64 | tr -d '\n')
export RPC_BOOTSTRAP_ADMIN_EMAIL=bench-admin@example.org RPC_BOOTSTRAP_ADMIN_PASSWORD="bench admin password 42"
export AUTH_SERVICE__LISTEN=127.0.0.1:18081 AUTH_SERVICE__DATABASE__URL="$PG_URL" \
    AUTH_SERVICE__DATABASE__SCHEMA=bench_auth AUTH_SERVICE__REDIS__URL="$REDIS_URL" \
    AUTH_SERVICE__REDIS__PREFIX=bench: AUTH_SERVICE__ASSERTION_SECRET="$secret" AUTH_SERVICE__LOG_FORMAT=json
export REGISTRY__LISTEN=127.0.0.1:18082 REGISTRY__DATABASE__URL="${REGISTRY_PG_URL:-$PG_URL}" \
    REGISTRY__DATABASE__SCHEMA=bench_registry REGISTRY__DATABASE__MAX_CONNECTIONS=$REGISTRY_POOL \
    REGISTRY__ASSERTION_SECRET="$secret" REGISTRY__LOG_FORMAT=json
export GATEWAY__LISTEN=127.0.0.1:18080 GATEWAY__ADMIN_LISTEN=127.0.0.1:18090 \
    GATEWAY__AUTH_SERVICE=127.0.0.1:18081 GATEWAY__REGISTRY=127.0.0.1:18082 \
    GATEWAY__ASSERTION_SECRET="$secret" GATEWAY__REDIS__URL="$REDIS_URL" GATEWAY__REDIS__PREFIX=bench: \
    GATEWAY__LOG_FORMAT=json GATEWAY__SERVER__THREADS=$GATEWAY_THREADS \
    GATEWAY__SERVER__PID_FILE="$work/gateway.pid" GATEWAY__SERVER__UPGRADE_SOCK="$work/gateway.sock"
export RUST_LOG=warn

wait_for() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done; log "$1 never answered"; exit 1; }
target/release/auth-service >"$work/auth.log" 2>&1 & pids+=($!)
target/release/registry >"$work/registry.log" 2>&1 & pids+=($!)
wait_for http://127.0.0.1:18081/health
wait_for http://127.0.0.1:18082/health
target/release/gateway >"$work/gateway.log" 2>&1 & pids+=($!); gateway_pid=$!
wait_for http://127.0.0.1:18090/health

log "seeding $SEED journeys"
seed_start=$(date +%s)
psql "$PG_URL" -q -v ON_ERROR_STOP=1 <<SQL
SET search_path TO bench_registry;
-- 20 operators, 200 000 drivers and 500 000 passengers over the last year.
INSERT INTO journeys (uuid, operator_id, operator_journey_id, operator_trip_id, operator_class,
    start_datetime, start_lat, start_lon, end_datetime, end_lat, end_lon, distance,
    driver_identity_key, passenger_identity_key, payload, created_at, acquisition_status,
    driver_phone, passenger_phone_trunc)
SELECT gen_random_uuid(), 1 + i % 20, 'seed-' || i, 'seed-trip-' || i / 2, 'C',
    t, 48.85, 2.35, t + interval '35 minutes', 48.9, 2.4, 12000,
    md5('driver' || i % 200000) || md5('d' || i % 200000),
    md5('passenger' || i % 500000) || md5('p' || i % 500000),
    jsonb_build_object('operator_journey_id', 'seed-' || i, 'operator_trip_id', 'seed-trip-' || i / 2,
        'operator_class', 'C', 'incentives', '[]'::jsonb, 'distance', 12000,
        'start', jsonb_build_object('datetime', t, 'lat', 48.85, 'lon', 2.35),
        'end', jsonb_build_object('datetime', t + interval '35 minutes', 'lat', 48.9, 'lon', 2.4),
        'driver', jsonb_build_object('revenue', 300, 'identity', jsonb_build_object(
            'identity_key', md5('driver' || i % 200000) || md5('d' || i % 200000),
            'operator_user_id', 'd' || i % 200000, 'phone', '+33601020304')),
        'passenger', jsonb_build_object('contribution', 300, 'seats', 1, 'identity', jsonb_build_object(
            'identity_key', md5('passenger' || i % 500000) || md5('p' || i % 500000),
            'operator_user_id', 'p' || i % 500000, 'phone_trunc', '+336010203'))),
    t + interval '2 hours', 'received', '+33601020304', '+336010203'
FROM generate_series(1, $SEED) AS i,
     LATERAL (SELECT now() - interval '2 days' - (i % 365) * interval '1 day'
                    - (i % 1440) * interval '1 minute' AS t) AS s;
VACUUM ANALYZE journeys;
-- The seed's dirty pages are set-up, not workload: flush them before measuring.
CHECKPOINT;
SQL
log "seeded in $(( $(date +%s) - seed_start )) s"

log "creating an operator and an application token"
token=$(python3 - <<'PY'
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
)

rows_before=$(psql "$PG_URL" -tAc 'SELECT count(*) FROM bench_registry.journeys')
log "warm-up ($WARMUP), then $DURATION at $CONNECTIONS connections; $rows_before journeys stored"
BENCH_TOKEN=$token BENCH_RUN=warm wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" \
    -s scripts/bench/ingest.lua http://127.0.0.1:18080 >/dev/null
rows_before=$(psql "$PG_URL" -tAc 'SELECT count(*) FROM bench_registry.journeys')
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }    # user + system, in clock ticks
cpu_gateway=$(cpu "$gateway_pid"); cpu_registry=$(cpu "${pids[1]}")
output=$(BENCH_TOKEN=$token BENCH_RUN=run wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
    -s scripts/bench/ingest.lua http://127.0.0.1:18080)
[ -z "${BENCH_DEBUG:-}" ] || echo "$output"
result=$(grep WRKRESULT <<<"$output")
rows_after=$(psql "$PG_URL" -tAc 'SELECT count(*) FROM bench_registry.journeys')
ticks=$(getconf CLK_TCK)
echo "$result"
echo "cpu during the run: gateway $(( ($(cpu "$gateway_pid") - cpu_gateway) / ticks )) s, registry $(( ($(cpu "${pids[1]}") - cpu_registry) / ticks )) s (of $DURATION on $(nproc) cores)"
requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$result")
stored=$((rows_after - rows_before))
echo "stored during the run: $stored rows; answered 201: $((requests - non2xx)); refused: $non2xx"
[ "$stored" -ge $((requests - non2xx)) ] || { log "fewer rows than 201 answers"; exit 1; }
