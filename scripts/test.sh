#!/usr/bin/env bash
# The whole test suite: installs the real servers if missing, then runs every
# unit, snapshot and integration test (Dovecot and Postfix on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo test --locked "$@"
