#!/usr/bin/env bash
# The whole loop against a local server with sample mail: starts Dovecot and
# Postfix on loopback (installing them if missing), fills a mailbox with
# examples/sample-mail/, and runs bridge doctor → sync → (generate → push)
# against it. The vault ends up in target/demo/vault.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-deps.sh
cargo build --quiet --bin bridge --example demo
exec target/debug/examples/demo "$@"
