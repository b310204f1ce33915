#!/usr/bin/env bash
# The sync benchmark: `bridge sync` against mbsync on a generated Dovecot
# mailbox over TLS on 127.0.0.1. See bench/README.md.
#
#   bench/sync.sh                        10,000 messages, 3 timed rounds
#   bench/sync.sh --memory               10,000 then 50,000 messages: bridge's peak-RSS growth
#   bench/sync.sh --store-dir /dev/shm   local stores on tmpfs (no fsync cost)
#   bench/sync.sh --help                 every option of the bench binary
#
# Other arguments go to the bench binary (bench/sync.rs). The output is also
# saved in target/bench/sync-<date>.log; its last line is the JSON summary.
set -euo pipefail
cd "$(dirname "$0")/.."

# Dovecot and isync (mbsync) from Debian's packages, if missing.
scripts/install-test-deps.sh

args=()
for arg in "$@"; do
  case "$arg" in
    --memory) args+=(--messages 10000,50000) ;;
    *) args+=("$arg") ;;
  esac
done

export CARGO_TERM_COLOR=never
# Release builds of bridge and of the bench (the bench profile is release).
cargo build --locked --release --bin bridge
cargo bench --locked --bench sync --no-run

mkdir -p target/bench
log="target/bench/sync-$(date +%Y%m%d-%H%M%S).log"
cargo bench --locked --bench sync -- ${args[@]+"${args[@]}"} 2>&1 | tee "$log"
echo "saved: $log"
