#!/usr/bin/env bash
# The project's one test command (CI runs it): formatting, lints, every test, against SQLite
# and against the real PostgreSQL and Redis on 127.0.0.1 (started or installed if needed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/prereqs.sh services
set -x
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Every service's binary: the replica tests run them as processes, and a test binary only
# brings its own package's binaries with it.
cargo build --workspace --bins
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
