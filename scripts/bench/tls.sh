#!/usr/bin/env bash
# The gateway over HTTPS against HAProxy over HTTPS (issue 27), in one run, by one load
# generator (wrk, OpenSSL 3 underneath), on one certificate (ECDSA P-256, made here):
#
#   kept-alive   GET /v3/journeys with a token over kept-alive TLS connections: requests per
#                core-second of the server.
#   handshakes   the same request on a new connection each time (`Connection: close`; wrk
#                resumes no session, so every one is a full TLS 1.3 handshake): new
#                connections per core-second.
#
# HAProxy 2.6 (Debian) runs ../shared/bench/haproxy.cfg.tmpl as the peer harness renders it
# (JWT HS256 check, stick-table limit, version header), its `bind` given `ssl crt` and ALPN
# h2,http/1.1; our gateway runs its full pipeline (the application token, the blacklist,
# permission, version, the Redis-shared limit, the identity assertion), TLS on
# 127.0.0.1:18443. Both forward to the harness's nginx backend (`return 200`) on
# 127.0.0.1:9201, and both have 2 threads (HAProxy nbthread 2; the gateway one proxy service
# per core).
#
#   scripts/bench/tls.sh            # DURATION [10s] CONNS [64] ROUNDS [3] HS_CONNS [32]
#   CERT_KEY=rsa scripts/bench/tls.sh   # an RSA-2048 certificate instead of ECDSA P-256
set -euo pipefail
cd "$(dirname "$0")/../.."
SHARED=${SHARED:-../shared/bench}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
HS_CONNS=${HS_CONNS:-32}
ROUNDS=${ROUNDS:-3}
CERT_KEY=${CERT_KEY:-ec}
JWT_SECRET=peers-bench-secret-0123456789abcdef

need() { command -v "$1" >/dev/null || { echo "[bench] installing $2" >&2; apt-get install -y -qq "$2" >/dev/null; }; }
need haproxy haproxy
need nginx nginx
need wrk wrk

export GATEWAY_REGISTRY=127.0.0.1:9201
export GATEWAY__RATE_LIMITS__CLASSES__JOURNEYS_READ=1000000000
export GATEWAY__TLS__LISTEN=127.0.0.1:18443
source scripts/bench/stack.sh
export GATEWAY__TLS__CERT_FILE="$work/cert.pem" GATEWAY__TLS__KEY_FILE="$work/key.pem"

# One certificate for both, self-signed (wrk does not verify): an ECDSA P-256 key by default,
# as public CAs issue today; CERT_KEY=rsa for RSA-2048, still the most common.
case "$CERT_KEY" in
    ec) newkey=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
    rsa) newkey=(-newkey rsa:2048) ;;
    *) echo "CERT_KEY is ec or rsa" >&2; exit 1 ;;
esac
openssl req -x509 "${newkey[@]}" -nodes -days 30 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat "$work/cert.pem" "$work/key.pem" >"$work/haproxy.pem"

# The harness's backend and HAProxy, rendered from its templates.
mkdir -p "$work/peer"
chmod 755 "$work" "$work/peer"
render() {
    sed -e "s#@@DIR@@#$work/peer#g" -e "s#@@BACKEND@@#127.0.0.1:9201#g" \
        -e "s#@@SECRET@@#$JWT_SECRET#g" -e "s#@@THREADS@@#2#g" -e "s#@@DEFAULT_LIMIT@@#100#g" \
        -e "s#@@VERSION_HEADER@@#X-API-Version#g" -e "s#@@VERSIONS@@#3.3#g" "$@"
}
render -e "s#@@WORKERS@@#1#g" -e "s#@@LISTEN@@#127.0.0.1:9201#g" \
    "$SHARED/nginx-backend.conf.tmpl" >"$work/peer/backend.conf"
printf 'bench-user 1000000000\n' >"$work/peer/limits.map"
render -e "s#@@LISTEN@@#127.0.0.1:9212 ssl crt $work/haproxy.pem alpn h2,http/1.1#g" \
    "$SHARED/haproxy.cfg.tmpl" >"$work/peer/haproxy.cfg"
nginx -c "$work/peer/backend.conf" -g 'daemon off;' >"$work/peer/nginx.out" 2>&1 & pids+=($!)
haproxy -f "$work/peer/haproxy.cfg" -db >"$work/peer/haproxy.out" 2>&1 & pids+=($!); haproxy_pid=$!
peer_token=$(python3 "$SHARED/mint_jwt.py" "$JWT_SECRET" bench-user 315360000)

bench_start
token=$(bench_token)
log "gateway pid $gateway_pid, haproxy pid $haproxy_pid"

# What each one negotiates, and a check that both answer 200 over TLS.
for target in "gateway https://localhost:18443/v3/journeys $token X-API-Version:v3.3" \
              "haproxy https://localhost:9212/journeys $peer_token X-API-Version:3.3"; do
    set -- $target
    code=$(curl -sk -o /dev/null -w '%{http_code} %{http_version}' -H "authorization: Bearer $3" -H "$4" "$2")
    proto=$(echo | openssl s_client -connect "127.0.0.1:$(echo "$2" | sed 's#https://localhost:\([0-9]*\)/.*#\1#')" \
        -servername localhost 2>/dev/null | sed -n 's/^New, \(.*\)$/\1/p' | head -1)
    log "$1: $code (status, HTTP version); $proto"
done

ticks() { awk '{sub(/^.*\) /,""); print $12 + $13}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
results="$work/results.txt"
: >"$results"
# run NAME PID URL TOKEN VERSION MODE: one wrk run, one line "name mode req/s core-s p99".
run() {
    local name=$1 pid=$2 url=$3 tok=$4 version=$5 mode=$6 conns=$CONNS extra=()
    if [ "$mode" = handshakes ]; then conns=$HS_CONNS; extra=(-H "Connection: close"); fi
    local before after out
    before=$(ticks "$pid")
    out=$(wrk -t2 -c"$conns" -d"$DURATION" --latency -H "authorization: Bearer $tok" \
        -H "X-API-Version: $version" "${extra[@]}" "$url")
    after=$(ticks "$pid")
    local rps p99 errors secs
    rps=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    errors=$(echo "$out" | awk '/Non-2xx/ {print $NF} /Socket errors/ {print}' | tr '\n' ' ')
    secs=${DURATION%s}
    awk -v n="$name" -v m="$mode" -v r="$rps" -v t=$((after - before)) -v hz="$hz" -v s="$secs" -v p="$p99" -v e="$errors" \
        'BEGIN { cs = t / hz; printf "%-8s %-11s %10.0f req/s  %6.2f core-s  %9.0f per core-s  p99 %s %s\n", n, m, r, cs, r * s / cs, p, e }' \
        | tee -a "$results" >&2
}
for mode in kept-alive handshakes; do
    for round in $(seq "$ROUNDS"); do
        log "round $round, $mode"
        run haproxy "$haproxy_pid" https://127.0.0.1:9212/journeys "$peer_token" 3.3 "$mode"
        run gateway "$gateway_pid" https://127.0.0.1:18443/v3/journeys "$token" v3.3 "$mode"
    done
done

echo "# tls.sh $(date -u +%FT%TZ) certificate key: $CERT_KEY; host: $(nproc) cpu ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)); haproxy $(haproxy -v | sed -n 's/^HAProxy version \([^ ]*\).*/\1/p'); wrk; $DURATION x $ROUNDS, $CONNS connections kept alive, $HS_CONNS for handshakes"
python3 - "$results" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault((r[0], r[1]), []).append((float(r[2]), float(r[6]), r[10]))
print("| mode | server | req/s (median) | per core-second (median) | p99 (median run) | vs HAProxy |")
print("|---|---|---|---|---|---|")
for mode in ["kept-alive", "handshakes"]:
    base = statistics.median(x[1] for x in by[("haproxy", mode)])
    for name in ["haproxy", "gateway"]:
        runs = sorted(by[(name, mode)], key=lambda x: x[1])
        mid = runs[len(runs) // 2]
        per = statistics.median(x[1] for x in runs)
        print(f"| {mode} | {name} | {statistics.median(x[0] for x in runs):.0f} | {per:.0f} | {mid[2]} | {per / base:.2f} |")
PY
