#!/usr/bin/env bash
# Makes sure what the build and the tests need is here, installing it when missing.
#   scripts/prereqs.sh build      cmake (pingora's zlib-ng build needs it)
#   scripts/prereqs.sh services   + PostgreSQL and Redis on 127.0.0.1, started if stopped,
#                                 PyJWT (the tests' independent JWT verifier), and Chromium,
#                                 Node >= 20 and playwright-core (the console's browser tests),
#                                 Prometheus and promtool (Debian's package) and check-jsonschema
#                                 (the monitoring test: tests/tests/e2e/observability.rs),
#                                 schemathesis (the API description against the stack),
#                                 kubectl and kubernetes-validate (the Kubernetes manifests)
set -euo pipefail
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '[prereqs] %s\n' "$*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
apt_install() {
  command -v apt-get >/dev/null || return 1
  say "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { as_root apt-get update -q >/dev/null 2>&1 && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >/dev/null; }
}

ensure_cmake() {
  command -v cmake >/dev/null && return
  apt_install cmake && return
  say "installing cmake from PyPI (no root)"
  python3 -m pip install --user -q cmake
  export PATH="$HOME/.local/bin:$PATH"
  command -v cmake >/dev/null || { say "cmake is required and could not be installed"; exit 1; }
}

pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = PONG ]; }

ensure_postgres() {
  if ! pg_up; then
    if ! command -v pg_ctlcluster >/dev/null; then
      apt_install postgresql
      # A fresh cluster: let the tests' loopback user in without a password.
      for hba in /etc/postgresql/*/main/pg_hba.conf; do
        as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$hba"
      done
    fi
    say "starting PostgreSQL"
    for v in $(ls /etc/postgresql); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    done
    for _ in $(seq 50); do pg_up && break; sleep 0.2; done
    pg_up || { say "PostgreSQL does not answer on 127.0.0.1:5432"; exit 1; }
  fi
  if ! psql -h 127.0.0.1 -U postgres -d test -c 'select 1' >/dev/null 2>&1; then
    psql -h 127.0.0.1 -U postgres -c 'create database test' >/dev/null 2>&1 ||
      as_root su postgres -c "psql -c 'create database test'" >/dev/null
  fi
}

ensure_redis() {
  redis_up && return
  command -v redis-server >/dev/null || apt_install redis-server
  say "starting Redis"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
  redis_up || { say "Redis does not answer on 127.0.0.1:6379"; exit 1; }
}

# PyJWT checks our tokens against the published JWKS in the tests (an independent verifier).
ensure_pyjwt() {
  python3 -c 'import jwt, cryptography' 2>/dev/null && return
  say "installing PyJWT and cryptography for the JWKS test"
  python3 -m pip install --user -q 'pyjwt[crypto]>=2.8' 2>/dev/null ||
    python3 -m pip install --user -q --break-system-packages 'pyjwt[crypto]>=2.8' 2>/dev/null ||
    apt_install python3-jwt python3-cryptography
  python3 -c 'import jwt, cryptography' || { say "PyJWT is required by the tests"; exit 1; }
}

# Python requests is one of the real HTTPS clients of the gateway's TLS tests.
ensure_requests() {
  python3 -c 'import requests' 2>/dev/null && return
  say "installing Python requests for the TLS test"
  python3 -m pip install --user -q 'requests>=2.28' 2>/dev/null ||
    python3 -m pip install --user -q --break-system-packages 'requests>=2.28' 2>/dev/null ||
    apt_install python3-requests
  python3 -c 'import requests' || { say "Python requests is required by the tests"; exit 1; }
  # ... and curl (HTTP/2 and HTTP/1.1 over TLS) the other.
  command -v curl >/dev/null || apt_install curl || { say "curl is required by the tests"; exit 1; }
}

# The console's tests drive Debian's Chromium with playwright-core (pinned in
# tests/browser/package-lock.json; it downloads no browser of its own).
ensure_browser() {
  command -v chromium >/dev/null || apt_install chromium ||
    { say "chromium is required by the console tests"; exit 1; }
  command -v npm >/dev/null || apt_install nodejs npm ||
    { say "node and npm are required by the console tests"; exit 1; }
  local major
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  [ "$major" -ge 20 ] || { say "the console tests need Node >= 20 (found $(node --version 2>/dev/null))"; exit 1; }
  if [ ! -d "$repo_root/tests/browser/node_modules/playwright-core" ]; then
    say "installing playwright-core for the console tests (npm ci in tests/browser)"
    (cd "$repo_root/tests/browser" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  fi
  # The compatibility tests compare our phone rules with the library the reference uses
  # (libphonenumber-js, pinned in tests/oracle/package-lock.json).
  if [ ! -d "$repo_root/tests/oracle/node_modules/libphonenumber-js" ]; then
    say "installing libphonenumber-js for the compatibility tests (npm ci in tests/oracle)"
    (cd "$repo_root/tests/oracle" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  fi
}

# The monitoring test runs promtool, a Prometheus of its own (on a free port, started and
# stopped by the test) and check-jsonschema on compose.yaml.
ensure_monitoring_tools() {
  if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
    # Debian's postinst starts a prometheus daemon on :9090 where an init system runs; the
    # test needs none, so it is stopped and disabled (only the one installed here).
    # A policy-rc.d of our own (when there is none: containers often have one) keeps the
    # package's postinst from starting it; else it is stopped below.
    local blocked=""
    if [ ! -e /usr/sbin/policy-rc.d ] &&
      as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d' 2>/dev/null; then
      blocked=1
    fi
    apt_install prometheus || { say "prometheus (Debian's package) is required by the monitoring test"; exit 1; }
    if [ -n "$blocked" ]; then as_root rm -f /usr/sbin/policy-rc.d; fi
    if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
      as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    elif [ -x /etc/init.d/prometheus ]; then
      as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
  fi
  export PATH="$HOME/.local/bin:$PATH"
  command -v check-jsonschema >/dev/null && return
  python3 -m check_jsonschema --version >/dev/null 2>&1 && return
  say "installing check-jsonschema (compose.yaml against the compose specification)"
  python3 -m pip install --user -q check-jsonschema 2>/dev/null ||
    python3 -m pip install --user -q --break-system-packages check-jsonschema ||
    { say "check-jsonschema is required by the monitoring test"; exit 1; }
}

# schemathesis checks the API description against the running stack
# (tests/tests/e2e/api_description.rs); pinned, so a new release's checks land on purpose.
SCHEMATHESIS_VERSION=4.32.5
ensure_schemathesis() {
  export PATH="$HOME/.local/bin:$PATH"
  st --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION" && return
  say "installing schemathesis $SCHEMATHESIS_VERSION (the API description against the stack)"
  python3 -m pip install --user -q "schemathesis==$SCHEMATHESIS_VERSION" 2>/dev/null ||
    python3 -m pip install --user -q --break-system-packages "schemathesis==$SCHEMATHESIS_VERSION" 2>/dev/null ||
    python3 -m pip install -q "schemathesis==$SCHEMATHESIS_VERSION" ||
    { say "schemathesis is required by the API description test"; exit 1; }
}

# The Kubernetes manifests are rendered with kubectl kustomize and checked against the
# Kubernetes schemas offline (tests/tests/e2e/kubernetes.rs); kubernetes-validate carries
# the schemas of each Kubernetes version, pinned so a new release's schemas land on purpose.
KUBERNETES_VALIDATE_VERSION=1.37.0
ensure_kubernetes_tools() {
  export PATH="$HOME/.local/bin:$PATH"
  if ! command -v kubectl >/dev/null; then
    apt_install kubectl 2>/dev/null || apt_install kubernetes-client ||
      { say "kubectl is required by the manifests test (kubectl kustomize)"; exit 1; }
  fi
  kubernetes-validate --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION" && return
  say "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION (the manifests against the Kubernetes schemas)"
  python3 -m pip install --user -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" 2>/dev/null ||
    python3 -m pip install --user -q --break-system-packages "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" 2>/dev/null ||
    python3 -m pip install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" ||
    { say "kubernetes-validate is required by the manifests test"; exit 1; }
}

ensure_cmake
if [ "${1:-build}" = services ]; then
  ensure_postgres
  ensure_redis
  ensure_pyjwt
  ensure_requests
  ensure_browser
  ensure_monitoring_tools
  ensure_schemathesis
  ensure_kubernetes_tools
fi
