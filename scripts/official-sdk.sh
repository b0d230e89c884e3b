#!/usr/bin/env bash
# Creates (once) a virtualenv outside the checkout holding the official LiveKit Python
# SDK, the reference peer of the interop tests and benchmarks, and prints its python.
set -euo pipefail
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/livekit-rtc"
VENV="$CACHE/official-venv"
PY="$VENV/bin/python"
if ! [[ -x "$PY" ]] || ! "$PY" -c "import livekit.rtc, livekit.api" 2>/dev/null; then
  mkdir -p "$CACHE"
  python3 -m venv "$VENV" >&2
  "$PY" -m pip install -q --disable-pip-version-check "livekit==1.2.1" "livekit-api" >&2
fi
echo "$PY"
