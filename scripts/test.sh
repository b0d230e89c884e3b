#!/usr/bin/env bash
# The whole test suite: installs what it needs (once, cached outside the checkout),
# then runs the Rust unit and integration tests against a real LiveKit server and the
# official Python SDK as interop peer.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"
"$ROOT/scripts/setup.sh"

echo "== rust: fmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== rust: tests (real LiveKit server on loopback)"
cargo test --workspace -- --test-threads=4
