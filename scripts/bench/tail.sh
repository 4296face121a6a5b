#!/usr/bin/env bash
# The gateway's tail round by round (issue 24, session 27): each round opens new connections
# (wrk -t2 -c64, GET /v3/journeys, $DURATION), and prints wrk's p99, the share of requests the
# gateway itself answered within 1, 2.5 and 5 ms (`gateway_request_duration_seconds`: from the
# request's head read to its answer's last byte), and the requests each proxy service served
# and the connections it held halfway through.
# The upstream is nginx answering a fixed body (the peer harness's backend).
#
#   scripts/bench/tail.sh                      # ROUNDS=8 DURATION=10s
#   CBPF=1 scripts/bench/tail.sh               # connections steered by source port
#                                              # (scripts/bench/reuseport_cbpf.py) instead of
#                                              # the kernel's hash
#   GATEWAY_BIN=/tmp/before/gateway scripts/bench/tail.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${ROUNDS:-8}
DURATION=${DURATION:-10s}
TEMPLATE=${TEMPLATE:-../shared/bench/nginx-backend.conf.tmpl}
[ -r "$TEMPLATE" ] || { echo "the peer harness's backend template is not at $TEMPLATE" >&2; exit 1; }
command -v nginx >/dev/null || { echo "nginx is needed (apt-get install nginx-light)" >&2; exit 1; }
export GATEWAY_REGISTRY=127.0.0.1:9201 GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_READ=1000000000
source scripts/bench/stack.sh
backend=$(mktemp -d /tmp/tail-backend.XXXXXX)
chmod 755 "$backend"
sed -e "s#@@WORKERS@@#1#g" -e "s#@@LISTEN@@#$GATEWAY_REGISTRY#g" -e "s#@@DIR@@#$backend#g" \
    "$TEMPLATE" >"$backend/backend.conf"
nginx -c "$backend/backend.conf" -g 'daemon off;' & backend_pid=$!
trap 'kill $backend_pid 2>/dev/null; wait $backend_pid 2>/dev/null; bench_stop; rm -rf "$backend"' EXIT
bench_start
token=$(bench_token)
services=$(curl -s http://127.0.0.1:18090/metrics | grep -c '^gateway_service_requests_total')
if [ "${CBPF:-0}" = 1 ]; then python3 scripts/bench/reuseport_cbpf.py "$gateway_pid" 18080 "$services"; fi
scrape() { curl -s http://127.0.0.1:18090/metrics >"$1"; }
for round in $(seq "$ROUNDS"); do
    scrape "$work/before"
    # Each service's open connections, read halfway through the round.
    (sleep "$(( ${DURATION%s} / 2 ))" && scrape "$work/during") & halfway=$!
    p99=$(wrk --latency -t2 -c64 -d"$DURATION" -H "Authorization: Bearer $token" \
        http://127.0.0.1:18080/v3/journeys | awk '$1 == "99%" {print $2}')
    wait "$halfway"
    scrape "$work/after"
    python3 - "$round" "$p99" "$work/before" "$work/after" "$work/during" <<'PY'
import re, sys
round_, p99, before, after, during = sys.argv[1:]
def read(path):
    buckets, services = {}, {}
    for line in open(path):
        m = re.match(r'gateway_request_duration_seconds_bucket\{route="/\{version\}/journeys",le="([^"]+)"\} (\d+)', line)
        if m:
            buckets[m.group(1)] = int(m.group(2))
        m = re.match(r'gateway_service_requests_total\{service="(\d+)"\} (\d+)', line)
        if m:
            services[m.group(1)] = int(m.group(2))
    return buckets, services
(b0, s0), (b1, s1) = read(before), read(after)
n = b1["+Inf"] - b0.get("+Inf", 0)
within = lambda le: 100 * (b1[le] - b0.get(le, 0)) / n
split = "/".join(str(s1[k] - s0.get(k, 0)) for k in sorted(s1))
held = [m.groups() for m in re.finditer(r'gateway_service_connections_open\{service="(\d+)"\} (\d+)', open(during).read())]
held = "/".join(n for _, n in sorted(held))
print(f"round {round_}: wrk p99 {p99}; {n} requests, within 1 ms {within('0.001'):.2f} %, "
      f"2.5 ms {within('0.0025'):.3f} %, 5 ms {within('0.005'):.3f} %; per service {split} "
      f"requests, {held} connections")
PY
done
