#!/usr/bin/env bash
# What client connections cost the gateway (issue 26, findings 10 and 7), in memory:
#
# 1. Idle kept-alive connections: CONNS connections (default 10 000) each make one request
#    (GET /.well-known/jwks.json, forwarded to auth-service) and then say nothing. The
#    gateway's RSS is read before, with them all open, and after its idle timeout
#    (IDLE_SECS, default 20 here, 75 in production), when it must have closed every one.
# 2. The same over TLS: TLS_CONNS connections (default 2 000; 0: none) to the HTTPS port
#    (self-signed ECDSA P-256 certificate, TLS 1.3 from Python's ssl), one request each,
#    then silent; the gateway's RSS with them all open and after its idle timeout.
#    CONNS=0 measures TLS alone.
# 3. A header flood: FLOOD connections (default 200) each send HEADER_KIB KiB of headers
#    (default 1000, under pingora's 1 MiB) without ever ending them; the gateway's RSS is
#    read while they are all held, then they are closed.
#
#   scripts/bench/connections.sh                 # BENCH_BIN=<dir> to measure other binaries
#   READ_BUFFER_BYTES=65536 scripts/bench/...    # pingora's default read buffer (the code before)
#
# Clients connect from 127.0.1.1, 127.0.1.2, ... (CONNS_PER_ADDRESS each, under the default
# per-network cap of 256), so the default caps stay on. Needs `ulimit -n` above CONNS + 100
# (it is raised here when the hard limit allows).
set -euo pipefail
cd "$(dirname "$0")/../.."
CONNS=${CONNS:-10000}
CONNS_PER_ADDRESS=${CONNS_PER_ADDRESS:-200}
IDLE_SECS=${IDLE_SECS:-20}
TLS_CONNS=${TLS_CONNS:-2000}
FLOOD=${FLOOD:-200}
HEADER_KIB=${HEADER_KIB:-1000}
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
most=$((CONNS > TLS_CONNS ? CONNS : TLS_CONNS))
[ "$(ulimit -n)" -gt $((most + 100)) ] || { echo "ulimit -n is $(ulimit -n): too low for $most connections" >&2; exit 1; }
export GATEWAY__CONNECTIONS__KEEPALIVE_IDLE_SECS=$IDLE_SECS
if [ -n "${READ_BUFFER_BYTES:-}" ]; then export GATEWAY__CONNECTIONS__READ_BUFFER_BYTES=$READ_BUFFER_BYTES; fi
[ "$TLS_CONNS" = 0 ] || export GATEWAY__TLS__LISTEN=127.0.0.1:18443
source scripts/bench/stack.sh
if [ "$TLS_CONNS" != 0 ]; then
    export GATEWAY__TLS__CERT_FILE="$work/cert.pem" GATEWAY__TLS__KEY_FILE="$work/key.pem"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
        -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
fi
bench_start
log "gateway pid $gateway_pid ($(git rev-parse --short HEAD), bin ${GATEWAY_BIN:-$bin/gateway}, read buffer ${READ_BUFFER_BYTES:-default}), $(lscpu | sed -n 's/^Model name: *//p')"
GATEWAY_PID=$gateway_pid STACK_PIDS="${pids[*]}" CONNS=$CONNS CONNS_PER_ADDRESS=$CONNS_PER_ADDRESS \
    IDLE_SECS=$IDLE_SECS FLOOD=$FLOOD HEADER_KIB=$HEADER_KIB TLS_CONNS=$TLS_CONNS python3 - <<'PY'
import os, select, socket, ssl, time

pid = int(os.environ["GATEWAY_PID"])
stack = [int(p) for p in os.environ["STACK_PIDS"].split()]
conns, per_address = int(os.environ["CONNS"]), int(os.environ["CONNS_PER_ADDRESS"])
idle_secs, flood, header_kib = int(os.environ["IDLE_SECS"]), int(os.environ["FLOOD"]), int(os.environ["HEADER_KIB"])
tls_conns = int(os.environ["TLS_CONNS"])
GATEWAY = ("127.0.0.1", 18080)

def rss_kib(p):
    with open(f"/proc/{p}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

def mib(kib):
    return f"{kib / 1024:.1f} MiB"

def report(label):
    gw, total = rss_kib(pid), sum(rss_kib(p) for p in stack)
    print(f"{label:<46} gateway RSS {mib(gw):>10}   stack RSS {mib(total):>10}", flush=True)
    return gw

def active_meanwhile(label):
    """Requests on a connection of its own (another client address) while the idle ones are held."""
    s = socket.create_connection(GATEWAY, timeout=30, source_address=("127.0.2.1", 0))
    answers = {}
    for _ in range(100):
        status = request(s)
        answers[status] = answers.get(status, 0) + 1
    s.close()
    print(f"  100 requests on an active connection while the {label} are held: {answers}", flush=True)

def connect(i, port=GATEWAY[1]):
    source = f"127.0.1.{i // per_address + 1}"
    s = socket.create_connection((GATEWAY[0], port), timeout=30, source_address=(source, 0))
    return s

def request(s):
    s.sendall(b"GET /.well-known/jwks.json HTTP/1.1\r\nhost: bench\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise RuntimeError("closed before the answer")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    status = head.split(b"\r\n")[0]
    length = next((int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        body += s.recv(65536)
    return status

def closed_by_gateway(held, started):
    """Waits until the gateway has closed every connection of `held` (read gives EOF), at
    most until 30 s past the idle timeout; returns how many it closed."""
    deadline = started + idle_secs + 30
    for s in held:
        s.setblocking(False)
    open_ = set(held)
    while open_ and time.time() < deadline:
        poller = select.poll()
        index = {s.fileno(): s for s in open_}
        for fd in index:
            poller.register(fd, select.POLLIN | select.POLLHUP)
        for fd, _ in poller.poll(1000):
            s = index[fd]
            try:
                if s.recv(1) == b"":
                    open_.discard(s)
            except (BlockingIOError, ssl.SSLWantReadError):
                pass
            except OSError:
                open_.discard(s)
    return len(held) - len(open_)

for _ in range(50):
    s = connect(0); request(s); s.close()
time.sleep(1)
before = report("before (warmed up, no client connection)")

def idle_phase(kind, count, open_one, since):
    """Opens `count` connections with `open_one(i)`, one request each, then holds them idle:
    the gateway's RSS per connection over `since` (KiB), requests on another connection
    meanwhile, and the gateway closing every one after its idle timeout."""
    held, statuses, started = [], {}, time.time()
    for i in range(count):
        s = open_one(i)
        status = request(s)
        statuses[status] = statuses.get(status, 0) + 1
        held.append(s)
    print(f"opened {count} {kind}connections, one request each, in {time.time() - started:.1f} s: {statuses}", flush=True)
    time.sleep(2)
    with_idle = report(f"{count} idle kept-alive {kind}connections")
    print(f"  per idle {kind}connection: {(with_idle - since) / count:.1f} KiB", flush=True)
    active_meanwhile(f"idle {kind}connections")
    closed = closed_by_gateway(held, started)
    print(f"after the idle timeout ({idle_secs} s): {closed} of {count} {kind}connections closed by the gateway, "
          f"{time.time() - started:.0f} s after the first was opened", flush=True)
    for s in held:
        s.close()
    time.sleep(2)
    report(f"after the idle timeout ({kind or 'plain '}connections)")

if conns:
    idle_phase("", conns, connect, before)
if tls_conns:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    tls = lambda i: context.wrap_socket(connect(i, 18443), server_hostname="localhost")
    idle_phase("TLS ", tls_conns, tls, report("before the TLS connections"))

# Finding 7: headers up to pingora's 1 MiB are read into memory before the gateway sees them.
if flood:
    piece = b"x-padding: " + b"a" * 16000 + b"\r\n"  # 16 KB lines: under httparse's 256 headers
    flooders = []
    for i in range(flood):
        s = connect(i)
        s.sendall(b"GET /.well-known/jwks.json HTTP/1.1\r\nhost: bench\r\n")
        flooders.append(s)
    sent, cut = 0, set()
    while sent < header_kib * 1024:
        for s in flooders:
            if s in cut:
                continue
            try:
                s.sendall(piece * 4)
            except OSError:
                cut.add(s)
        sent += len(piece) * 4
    time.sleep(2)
    flooded = report(f"{flood} connections x {sent // 1024} KiB of unfinished headers")
    print(f"  per flooding connection: {(flooded - before) / max(flood, 1):.0f} KiB ({len(cut)} cut by the gateway while sending)", flush=True)
    answers = {}
    for s in flooders:
        s.settimeout(10)
        try:
            s.sendall(b"\r\n")
            line = s.recv(200).split(b"\r\n")[0] or b"(closed)"
        except OSError as e:
            line = f"({type(e).__name__})".encode()
        answers[line] = answers.get(line, 0) + 1
        s.close()
    print(f"  answers once the headers end: {answers}", flush=True)
    time.sleep(2)
    report("after the flood")
PY
log "gateway log, warnings and errors:"; grep -ciE '"level":"(WARN|ERROR)"' "$work/gateway.log" || true
grep -iE '"level":"(WARN|ERROR)"' "$work/gateway.log" | cut -c1-300 | sort | uniq -c | sort -rn | head -5 || true
