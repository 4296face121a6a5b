#!/usr/bin/env bash
# Export benchmark (issue 20): one Paris month holding SEED journeys of one operator, exported
# through gateway -> registry -> PostgreSQL, synchronously (GET /v3/exports/journeys, CSV) and
# asynchronously (POST /v3/exports, then the zip). Reports rows/s and the registry's peak
# resident memory (VmHWM, reset before each export), and checks that the zip's CSV is the
# synchronous CSV byte for byte. Goal: the registry under 100 MB at its peak.
#
#   scripts/bench/export.sh                     # defaults below; every knob is an environment variable
#   BEFORE=../wt-before/target/release/registry scripts/bench/export.sh
#                                               # also the synchronous export of another registry
#                                               # build (e.g. the code before), on a copy of the month
#
# It builds the release binaries, starts auth-service, registry and the gateway on 127.0.0.1
# (ports 18080-18090) against the machine's PostgreSQL (fresh schemas bench_auth,
# bench_registry and, with BEFORE, bench_registry_before, dropped at the end) and Redis (prefix
# bench:), creates an operator and an application token through the API and seeds the month
# with SQL (a third of the journeys paid an incentive). Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

SEED=${SEED:-1000000}                 # journeys in the month
RUNS=${RUNS:-1}                       # measurements of each export
BEFORE=${BEFORE:-}                    # a registry binary to compare with (synchronous export only)
# The export routes are in the reference's default class (100 / 5 min): lift it for the polls.
export GATEWAY__RATE_LIMITS__CLASSES__DEFAULT=1000000000
# The runner picks the export job up within this; the build time is read from the export's
# own timestamps (created_at to completed_at), so the poll only bounds the wait.
export REGISTRY__JOBS__POLL_INTERVAL_MS=${REGISTRY__JOBS__POLL_INTERVAL_MS:-100}
source scripts/bench/stack.sh
export REGISTRY__EXPORTS__DIRECTORY="$work/exports"
drop_before() { psql "$PG_URL" -qc 'DROP SCHEMA IF EXISTS bench_registry_before CASCADE' >/dev/null 2>&1 || true; }
trap 'bench_cleanup; drop_before' EXIT
drop_before
bench_start registry

log "creating an operator and an application token"
token=$(bench_token)
operator_id=$(python3 -c '
import base64, json, sys
payload = sys.argv[1].split(".")[1]
print(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["op"])' "$token")

# The Paris month holding the day 40 days ago: whole, and ended more than five days ago, as
# the asynchronous export requires.
read -r month start_at end_at <<<"$(psql "$PG_URL" -tAF' ' -c "
    SELECT to_char(m, 'YYYY-MM'),
           to_char((m AT TIME ZONE 'Europe/Paris') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
           to_char(((m + interval '1 month') AT TIME ZONE 'Europe/Paris') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')
    FROM (SELECT date_trunc('month', (now() - interval '40 days') AT TIME ZONE 'Europe/Paris') AS m) s")"
log "seeding $SEED journeys of operator $operator_id in $month ($start_at to $end_at)"
seed_start=$(date +%s)
psql "$PG_URL" -q -v ON_ERROR_STOP=1 <<SQL
SET search_path TO bench_registry;
-- Spread over the month, final and checked; one id in a thousand needs CSV quoting.
INSERT INTO journeys (uuid, operator_id, operator_journey_id, operator_trip_id, operator_class,
    start_datetime, start_lat, start_lon, end_datetime, end_lat, end_lon, distance,
    driver_identity_key, passenger_identity_key, payload, created_at, acquisition_status,
    fraud_status, anomaly_status, finalized_at, driver_phone, passenger_phone_trunc)
SELECT gen_random_uuid(), $operator_id,
    CASE WHEN i % 1000 = 0 THEN 'bench "' || i || '", quoted' ELSE 'bench-' || i END,
    'bench-trip-' || i / 2, 'C',
    t, 48.85 + (i % 1000) / 10000.0, 2.35, t + interval '35 minutes', 48.9, 2.4 + (i % 997) / 10000.0,
    12000 + i % 5000,
    md5('driver' || i % 200000) || md5('d' || i % 200000),
    md5('passenger' || i % 500000) || md5('p' || i % 500000),
    '{}', t + interval '1 hour', 'processed', 'passed', 'passed', t + interval '48 hours',
    '+33601020304', '+336010203'
FROM generate_series(1, $SEED) AS i,
     LATERAL (SELECT timestamptz '$start_at'
                     + (i - 1) * ((timestamptz '$end_at' - timestamptz '$start_at') / $SEED) AS t) AS s;
INSERT INTO campaigns (name, start_at, end_at, operator_classes, amount_per_km, min_distance,
    max_distance, created_at)
VALUES ('bench', '$start_at', '$end_at', '["C"]', 10, 2000, 50000, now());
INSERT INTO incentives (journey_id, campaign_id, beneficiary_key, start_datetime, amount, computed_at)
SELECT journey_id, (SELECT max(id) FROM campaigns), driver_identity_key, start_datetime, 120, now()
FROM journeys WHERE journey_id % 3 = 0;
-- The runner would issue last month's funding call at start: not this benchmark's work.
INSERT INTO jobs (kind, subject, run_at, created_at, done_at)
VALUES ('funding_call', to_char((now() AT TIME ZONE 'Europe/Paris') - interval '1 month', 'YYYY-MM'),
        now(), now(), now())
ON CONFLICT (kind, subject) DO UPDATE SET done_at = now();
VACUUM ANALYZE journeys;
VACUUM ANALYZE incentives;
CHECKPOINT;
SQL
log "seeded in $(( $(date +%s) - seed_start )) s"

api=http://127.0.0.1:18080
auth=(-H "Authorization: Bearer $token")
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }     # user + system, in clock ticks
kib() { awk -v k="$2" '$1 == k ":" {print $2}' "/proc/$1/status"; }
# Forgets the peak resident set so far: VmHWM then is the peak of what follows.
reset_peak() { echo 5 > "/proc/$1/clear_refs"; }
rate() { awk -v r="$1" -v s="$2" 'BEGIN {if (s > 0) printf "%.0f", r / s; else printf "-"}'; }
ticks=$(getconf CLK_TCK)

# The synchronous export of the month from the registry `pid`; prints its figures and keeps
# the CSV in $work/$2.csv.
sync_export() {
    local pid=$1 name=$2
    reset_peak "$pid"
    local rss_before cpu_before
    rss_before=$(kib "$pid" VmRSS); cpu_before=$(cpu "$pid")
    read -r code first total size <<<"$(curl -s -o "$work/$name.csv" "${auth[@]}" \
        -w '%{http_code} %{time_starttransfer} %{time_total} %{size_download}' \
        "$api/v3/exports/journeys?start=$start_at&end=$end_at")"
    [ "$code" = 200 ] || { log "synchronous export answered $code"; head -c 300 "$work/$name.csv" >&2; exit 1; }
    local rows=$(( $(wc -l <"$work/$name.csv") - 1 ))
    echo "$name synchronous export: $rows rows, $((size / 1048576)) MiB in ${total} s (first byte ${first} s): $(rate "$rows" "$total") rows/s;" \
        "registry CPU $(( ($(cpu "$pid") - cpu_before) * 1000 / ticks )) ms, RSS before ${rss_before} KiB, peak (VmHWM) $(kib "$pid" VmHWM) KiB"
}

# The asynchronous export of the month: asks, polls, downloads, and checks the zip's CSV
# against the synchronous one.
async_export() {
    log "asynchronous export"
    reset_peak "$registry_pid"
    local rss_before cpu_before asked uuid status state done_at rows build peak cpu_used code size
    rss_before=$(kib "$registry_pid" VmRSS); cpu_before=$(cpu "$registry_pid")
    asked=$(date +%s.%N)
    uuid=$(curl -sf "${auth[@]}" -H 'content-type: application/json' -X POST "$api/v3/exports" \
        -d "{\"tz\":\"Europe/Paris\",\"start_at\":\"$start_at\",\"end_at\":\"$end_at\",\"operator_id\":[]}" |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["uuid"])')
    while :; do
        status=$(curl -sf "${auth[@]}" "$api/v3/exports/$uuid")
        state=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["status"])' "$status")
        [ "$state" = pending ] || [ "$state" = running ] || break
        sleep 0.2
    done
    done_at=$(date +%s.%N)
    [ "$state" = success ] || { log "the export ended $state: $status"; exit 1; }
    read -r rows build <<<"$(python3 -c '
import json, sys
from datetime import datetime
s = json.loads(sys.argv[1])
t = lambda k: datetime.fromisoformat(s[k].replace("Z", "+00:00"))
print(s["rows"], (t("completed_at") - t("created_at")).total_seconds())' "$status")"
    peak=$(kib "$registry_pid" VmHWM); cpu_used=$(( ($(cpu "$registry_pid") - cpu_before) * 1000 / ticks ))
    read -r code size <<<"$(curl -s -o "$work/ours.zip" "${auth[@]}" -w '%{http_code} %{size_download}' "$api/v3/exports/$uuid/download")"
    [ "$code" = 200 ] || { log "download answered $code"; exit 1; }
    echo "asynchronous export: $rows rows built in $build s (asked to success seen: $(awk -v a="$asked" -v b="$done_at" 'BEGIN {printf "%.2f", b - a}') s): $(rate "$rows" "$build") rows/s;" \
        "zip $((size / 1048576)) MiB; registry CPU $cpu_used ms, RSS before ${rss_before} KiB, peak (VmHWM) $peak KiB"
    unzip -p "$work/ours.zip" | cmp -s - "$work/ours.csv" \
        && echo "the zip's CSV is the synchronous CSV, byte for byte" \
        || { log "the zip's CSV differs from the synchronous CSV"; exit 1; }
}

for run in $(seq 1 "$RUNS"); do
    [ "$RUNS" = 1 ] || log "run $run of $RUNS"
    sync_export "$registry_pid" ours
    async_export
done

if [ -n "$BEFORE" ]; then
    log "the registry at $BEFORE, on a copy of the month (schema bench_registry_before)"
    kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true
    # No job runner in it: the copied month must not set off last month's funding call. It
    # runs in a directory of its own: this tree's config/registry.yaml and exports settings may
    # name keys its code does not know (it refuses them).
    mkdir -p "$work/before"
    (cd "$work/before" && exec env -u REGISTRY__EXPORTS__DIRECTORY \
        REGISTRY__DATABASE__SCHEMA=bench_registry_before REGISTRY__JOBS__POLL_INTERVAL_MS=0 \
        "$(realpath "$BEFORE")") >"$work/registry-before.log" 2>&1 & pids+=($!); before_pid=$!
    (wait_for http://127.0.0.1:18082/health) || { grep -v "^ " "$work/registry-before.log" | head -20 >&2; exit 1; }
    psql "$PG_URL" -q -v ON_ERROR_STOP=1 <<'SQL'
INSERT INTO bench_registry_before.journeys SELECT * FROM bench_registry.journeys;
INSERT INTO bench_registry_before.campaigns SELECT * FROM bench_registry.campaigns;
INSERT INTO bench_registry_before.incentives SELECT * FROM bench_registry.incentives;
VACUUM ANALYZE bench_registry_before.journeys;
VACUUM ANALYZE bench_registry_before.incentives;
CHECKPOINT;
SQL
    for run in $(seq 1 "$RUNS"); do
        [ "$RUNS" = 1 ] || log "run $run of $RUNS"
        sync_export "$before_pid" before
    done
    cmp -s "$work/before.csv" "$work/ours.csv" \
        && echo "the code before answers the same CSV, byte for byte" \
        || { log "the code before answers another CSV"; exit 1; }
fi
