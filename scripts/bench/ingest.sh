#!/usr/bin/env bash
# Ingestion benchmark (issues 3, 25): journeys/s, p50 and p99 of POST /v3/journeys through
# gateway -> registry -> PostgreSQL, at 64 concurrent clients, from an empty registry and with
# 1 M journeys already stored (SEED="0 1000000", one new stack each).
#
#   scripts/bench/ingest.sh            # defaults below; every knob is an environment variable
#
# It builds the release binaries, starts auth-service, registry and the gateway on 127.0.0.1
# (ports 18080-18090) against the machine's PostgreSQL (fresh schemas bench_auth and
# bench_registry, dropped at the end) and Redis (prefix bench:), and for each SEED: seeds that
# many journeys with SQL and analyses them (0: the statistics of an empty table, as a new
# registry's first day before autoanalyze), creates an operator and an application token
# through the API, runs wrk for DURATION (after WARMUP, except from empty: the cold start is
# what is measured), then checks that every 201 is a stored row. Each run also prints each process's CPU per journey,
# the WAL written, the checkpoints and autovacuum passes, the tuples each index of the journeys
# table read, the batches, and the mean time spent in the gateway, the registry's handler and
# its store insert. BENCH_BIN runs other binaries (e.g. the code before, built elsewhere). Everything it starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

SEED=${SEED:-"0 1000000"}             # journeys stored before the runs, one stack per value
CONNECTIONS=${CONNECTIONS:-64}        # concurrent clients
THREADS=${THREADS:-2}                 # wrk threads
DURATION=${DURATION:-60s}
WARMUP=${WARMUP:-5s}
RUNS=${RUNS:-1}                       # measured runs after each seed (and warm-up)
# REGISTRY_PG_URL overrides PG_URL for the registry alone (e.g. to pass `options=-c ...`);
# BENCH_DEBUG=1 prints wrk's whole output and the first refused answers.

# The whole stack, PostgreSQL and wrk share this machine's cores: one thread each for the
# gateway and the registry spends less CPU per journey than one per core (no cross-thread
# wake-ups and work stealing; docs/performance.md). Set them to 2 / 0 to measure the defaults.
GATEWAY_THREADS=${GATEWAY_THREADS:-1}
REGISTRY_THREADS=${REGISTRY_THREADS:-1}
# One operator sends every journey here: lift the reference's 20 000/min per operator.
export GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_WRITE=1000000000
source scripts/bench/stack.sh

# Seeds $1 journeys into a new registry, analysed.
seed() {
log "seeding $1 journeys"
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
FROM generate_series(1, $1) AS i,
     LATERAL (SELECT now() - interval '2 days' - (i % 365) * interval '1 day'
                    - (i % 1440) * interval '1 minute' AS t) AS s;
VACUUM ANALYZE journeys;
-- The seed's dirty pages are set-up, not workload: flush them before measuring.
CHECKPOINT;
SQL
log "seeded in $(( $(date +%s) - seed_start )) s"
}
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }    # user + system, in clock ticks
# PostgreSQL: every server process (the registry's pooled backends live through the run).
cpu_pg() { local t=0; for p in $(pgrep -x postgres); do t=$((t + $(cpu "$p" 2>/dev/null || echo 0))); done; echo "$t"; }
# A histogram's sum and count at a metrics endpoint, over the series whose labels hold a
# given text (every series when it is empty):   histogram URL METRIC [LABEL_TEXT]
histogram() {
    curl -s "$1" | awk -v m="$2" -v l="${3:-}" '
        function ours(suffix) {
            return ($1 == m suffix || index($1, m suffix "{") == 1) && (l == "" || index($1, l))
        }
        ours("_sum") {s += $2}
        ours("_count") {c += $2}
        END {printf "%f %d", s, c}'
}
# Grouped inserts (registry ingest.batch_max > 1): the journeys they carried (a sum) and the
# transactions.
batches() { histogram http://127.0.0.1:18082/metrics registry_journey_insert_batch_size; }
# Where a request's time goes, as cumulative sums and counts: the gateway (the whole
# request), the registry's HTTP handling of journey creations, and its store insert (the
# wait for a batch writer and the transaction).
latencies() {
    histogram http://127.0.0.1:18090/metrics gateway_request_duration_seconds 'route="/{version}/journeys"'
    echo -n ' '
    histogram http://127.0.0.1:18082/metrics registry_http_request_duration_seconds 'route="/{version}/journeys"'
    echo -n ' '
    histogram http://127.0.0.1:18082/metrics registry_db_duration_seconds 'op="insert"'
}
# The mean in ms of a histogram between two readings: mean SUM_BEFORE COUNT_BEFORE SUM COUNT
mean_ms() { awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN {if (d > b) printf "%.2f", (c - a) * 1000 / (d - b); else printf "-"}'; }
# WAL written by the whole cluster: records, full-page images, bytes.
wal() { psql "$PG_URL" -tAF' ' -c 'SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal'; }
# Background work that competes with the run: checkpoints started (timed or requested by the
# WAL volume) and autovacuum passes over the registry's tables.
# Index scans and tuples read by each index of the journeys table, cumulative.
index_reads() {
    psql "$PG_URL" -tAF' ' -c "SELECT indexrelname, idx_scan, idx_tup_read FROM pg_stat_user_indexes
        WHERE schemaname = 'bench_registry' AND relname = 'journeys' ORDER BY indexrelname"
}
background() {
    psql "$PG_URL" -tAF' ' -c "SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter),
        (SELECT coalesce(sum(autovacuum_count + autoanalyze_count), 0) FROM pg_stat_all_tables
         WHERE schemaname = 'bench_registry')"
}

# Bytes the registry's schema takes in PostgreSQL: every table with its indexes and TOAST
# (journeys, their revisions, the lifecycle's jobs...), for the storage per journey.
schema_bytes() {
    psql "$PG_URL" -tAc "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'bench_registry' AND c.relkind = 'r'"
}
# A process's peak resident memory, in MiB.
peak_mib() { awk '/^VmHWM/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }
# The same per table (name, bytes).
table_bytes() {
    psql "$PG_URL" -tAF' ' -c "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'bench_registry' AND c.relkind = 'r'
        ORDER BY 1"
}
# One measured run of $DURATION: wrk's figures, CPU per process, WAL, batches, and the check
# that every 201 is a stored row.
measure() {
    rows_before=$(psql "$PG_URL" -tAc 'SELECT count(*) FROM bench_registry.journeys')
    bytes_before=$(schema_bytes)
    tables_before=$(table_bytes)
    cpu_gateway=$(cpu "$gateway_pid"); cpu_registry=$(cpu "$registry_pid"); cpu_postgres=$(cpu_pg)
    read -r batched_before batches_before <<<"$(batches)"
    read -r wal_records wal_fpi wal_bytes <<<"$(wal)"
    read -r gw_s0 gw_n0 http_s0 http_n0 db_s0 db_n0 <<<"$(latencies)"
    read -r checkpoints autovacuums <<<"$(background)"
    indexes_before=$(index_reads)
    output=$(BENCH_TOKEN=$token BENCH_RUN=run$1 wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency \
        -s scripts/bench/ingest.lua http://127.0.0.1:18080)
    [ -z "${BENCH_DEBUG:-}" ] || echo "$output"
    result=$(grep WRKRESULT <<<"$output")
    rows_after=$(psql "$PG_URL" -tAc 'SELECT count(*) FROM bench_registry.journeys')
    ticks=$(getconf CLK_TCK)
    echo "$result"
    local gw=$(( $(cpu "$gateway_pid") - cpu_gateway )) reg=$(( $(cpu "$registry_pid") - cpu_registry )) pg=$(( $(cpu_pg) - cpu_postgres ))
    echo "cpu during the run: gateway $((gw / ticks)) s, registry $((reg / ticks)) s, postgres $((pg / ticks)) s (of $DURATION on $(nproc) cores)"
    local served=$(( $(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result") ))
    [ "$served" -gt 0 ] && echo "cpu per journey: gateway $((gw * 1000000 / ticks / served)) µs, registry $((reg * 1000000 / ticks / served)) µs, postgres $((pg * 1000000 / ticks / served)) µs"
    read -r batched_after batches_after <<<"$(batches)"
    transactions=$((batches_after - batches_before))
    read -r wal_records_after wal_fpi_after wal_bytes_after <<<"$(wal)"
    echo "WAL during the run: $((wal_records_after - wal_records)) records, $((wal_fpi_after - wal_fpi)) full-page images, $(( (${wal_bytes_after%.*} - ${wal_bytes%.*}) / 1048576 )) MiB"
    read -r checkpoints_after autovacuums_after <<<"$(background)"
    echo "background during the run: $((checkpoints_after - checkpoints)) checkpoints started, $((autovacuums_after - autovacuums)) autovacuum or autoanalyze passes"
    echo "index reads during the run (scans, tuples read):"
    join <(echo "$indexes_before") <(index_reads) | awk '{
        scans = $4 - $2; tuples = $5 - $3
        if (scans > 0) printf "  %s: %d scans, %d tuples (%.1f per scan)\n", $1, scans, tuples, tuples / scans }'
    echo "grouped inserts during the run: $transactions transactions carrying $(( ${batched_after%.*} - ${batched_before%.*} )) journeys"
    read -r gw_s1 gw_n1 http_s1 http_n1 db_s1 db_n1 <<<"$(latencies)"
    echo "mean time per journey: gateway $(mean_ms "$gw_s0" "$gw_n0" "$gw_s1" "$gw_n1") ms, registry HTTP $(mean_ms "$http_s0" "$http_n0" "$http_s1" "$http_n1") ms, store insert (queue and transaction) $(mean_ms "$db_s0" "$db_n0" "$db_s1" "$db_n1") ms"
    requests=$(sed -E 's/.*requests=([0-9]+).*/\1/' <<<"$result")
    non2xx=$(sed -E 's/.*non2xx=([0-9]+).*/\1/' <<<"$result")
    stored=$((rows_after - rows_before))
    echo "stored during the run: $stored rows; answered 201: $((requests - non2xx)); refused: $non2xx"
    local bytes_after=$(schema_bytes)
    [ "$stored" -gt 0 ] && echo "PostgreSQL: $(( (bytes_after - bytes_before) / stored )) bytes per journey stored during the run (tables, indexes, TOAST; $(( bytes_after / 1048576 )) MiB in all for $rows_after journeys)" &&
        join <(echo "$tables_before") <(table_bytes) | awk -v n="$stored" '$3 > $2 {printf "  %s: %d bytes per journey\n", $1, ($3 - $2) / n}'
    echo "peak memory (VmHWM): gateway $(peak_mib "$gateway_pid") MiB, registry $(peak_mib "$registry_pid") MiB, auth-service $(peak_mib "$auth_pid") MiB"
    [ "$stored" -ge $((requests - non2xx)) ] || { log "fewer rows than 201 answers"; exit 1; }
}
for seeded in $SEED; do
    bench_start registry
    seed "$seeded"
    log "creating an operator and an application token"
    token=$(bench_token)
    rows_before=$(psql "$PG_URL" -tAc 'SELECT count(*) FROM bench_registry.journeys')
    log "$rows_before journeys stored; $DURATION at $CONNECTIONS connections ($THREADS wrk threads); gateway threads $GATEWAY_THREADS, registry threads $REGISTRY_THREADS (0: one per core)"
    if [ "$seeded" -gt 0 ]; then
        log "warm-up ($WARMUP)"
        BENCH_TOKEN=$token BENCH_RUN=warm wrk -t"$THREADS" -c"$CONNECTIONS" -d"$WARMUP" \
            -s scripts/bench/ingest.lua http://127.0.0.1:18080 >/dev/null
    fi
    for run in $(seq 1 "$RUNS"); do
        log "seed $seeded: run $run of $RUNS"
        echo "== seed $seeded, run $run"
        measure "$run"
    done
    bench_stop
done
