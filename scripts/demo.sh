#!/usr/bin/env bash
# The main job: installs what it needs, builds and installs the livekit-rtc package,
# starts a local LiveKit server and runs the example room end to end
# (examples/basic_room.py: two participants join, exchange data, leave).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"
"$ROOT/scripts/setup.sh"
PY="$("$ROOT/scripts/python-env.sh")"
exec python3 "$ROOT/tests/lkserver.py" -- "$PY" "$ROOT/examples/basic_room.py"
