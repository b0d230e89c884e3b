#!/usr/bin/env bash
# Installs our livekit-rtc package (`pip install .`, a release build through maturin)
# into the dev virtualenv and prints that virtualenv's python.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"
PY="$("$ROOT/scripts/dev-venv.sh")"
# A stale editable build (maturin develop) would shadow the installed one.
rm -f "$ROOT"/python/livekit/rtc/_native*.so
PATH="$(dirname "$PY"):$PATH" "$PY" -m pip install -q --disable-pip-version-check --no-build-isolation "$ROOT" >&2
echo "$PY"
