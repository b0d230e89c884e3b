#!/usr/bin/env bash
# Regenerates the Python modules for protocol/*.proto (committed, so that `pip install .`
# needs no protoc). Rust compiles the same files in livekit-ffi/build.rs.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"
# Old generator on purpose: its code runs on every protobuf runtime from 4.25 to 7.
CODEGEN="$LK_CACHE/codegen-venv"
if ! [[ -x "$CODEGEN/bin/protoc-gen-mypy" ]]; then
  python3 -m venv "$CODEGEN"
  "$CODEGEN/bin/pip" install -q --disable-pip-version-check "grpcio-tools==1.62.3" "mypy-protobuf==3.6.0"
fi
PY="$CODEGEN/bin/python"
OUT="$ROOT/python/livekit/rtc/_proto"
mkdir -p "$OUT"
rm -f "$OUT"/*_pb2.py "$OUT"/*_pb2.pyi
PATH="$(dirname "$PY"):$PATH" "$PY" -m grpc_tools.protoc -I"$ROOT/protocol" --python_out="$OUT" --mypy_out="$OUT" "$ROOT"/protocol/*.proto
# protoc writes top-level imports; inside a package they must be relative.
for f in "$OUT"/*_pb2.py "$OUT"/*_pb2.pyi; do
  sed -i -E 's/^import ([a-z0-9_]+_pb2)( as [a-z0-9_]+)?$/from . import \1\2/' "$f"
done
touch "$OUT/__init__.py"
