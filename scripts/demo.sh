#!/usr/bin/env bash
# The main job: starts a local LiveKit server and runs the example room end to end.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"
"$ROOT/scripts/setup.sh"
cargo build -q --example basic_room
EX="$CARGO_TARGET_DIR/debug/examples/basic_room"
python3 "$ROOT/tests/lkserver.py" -- bash -c "
  LIVEKIT_RUN_SECS=6 '$EX' \"\$LIVEKIT_URL\" demo alice &
  sleep 1
  LIVEKIT_RUN_SECS=3 '$EX' \"\$LIVEKIT_URL\" demo bob
  wait
"
