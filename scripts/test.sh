#!/usr/bin/env bash
# The whole test suite: installs what it needs (once, cached outside the checkout),
# then runs the Rust unit and integration tests and the Python package's tests, all
# against a real LiveKit server, with the official Python SDK as interop peer.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"
"$ROOT/scripts/setup.sh"
cd "$ROOT"

echo "== rust: fmt, clippy"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

echo "== rust: livekit-core for the ESP32-C3 (riscv32imc-unknown-none-elf, no_std)"
# rv32imc has no atomic compare-and-swap; the C3 is single-core, so portable-atomic
# may assume that (the firmware build sets the same).
RUSTFLAGS="--cfg portable_atomic_unsafe_assume_single_core" \
  cargo build -p livekit-core --target riscv32imc-unknown-none-elf

echo "== rust: tests (real LiveKit server on loopback)"
cargo test --workspace -- --test-threads=4

echo "== firmware: ESP32-C3 image and livekit-core tests on rv32 (QEMU)"
bash "$ROOT/scripts/firmware.sh"

echo "== fuzz: FFI requests, signal messages, data packets, link frames (bounded)"
bash "$ROOT/scripts/fuzz.sh"

echo "== python: build and install the package (pip install .)"
PY="$("$ROOT/scripts/python-env.sh")"

echo "== python: mypy"
"$PY" -m mypy

echo "== python: tests"
"$PY" -m pytest -q tests/python
