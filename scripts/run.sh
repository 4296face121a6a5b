#!/usr/bin/env bash
# Runs the whole stack on its embedded defaults (SQLite under ./data, gateway on
# 127.0.0.1:8080 and https://127.0.0.1:8443 with a local certificate under ./data/tls):
# `cargo run --release`, after installing cmake if the machine lacks it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh build
exec cargo run --release -- "$@"
