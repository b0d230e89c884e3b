#!/usr/bin/env bash
# A virtualenv outside the checkout with the build and test tools of the Python package
# (maturin, pytest, mypy, protobuf codegen, livekit-api); prints its python.
set -euo pipefail
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/livekit-rtc"
VENV="$CACHE/dev-venv"
PY="$VENV/bin/python"
STAMP="$VENV/.deps-v3"
if ! [[ -f "$STAMP" ]]; then
  mkdir -p "$CACHE"
  [[ -x "$PY" ]] || python3 -m venv "$VENV" >&2
  "$PY" -m pip install -q --disable-pip-version-check \
    "maturin>=1.7,<2" "pytest>=8" "pytest-asyncio>=0.23" "mypy>=1.10" \
    "protobuf>=5" "grpcio-tools" "mypy-protobuf" "types-protobuf" "livekit-api" "numpy" "pydantic" >&2
  touch "$STAMP"
fi
echo "$PY"
