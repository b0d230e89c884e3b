#!/usr/bin/env bash
# Installs the pinned LiveKit server (a Go module) into a cache outside the checkout,
# once, and prints the path of its binary. Everything that needs a server calls this.
set -euo pipefail
VERSION="v1.13.5"
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/livekit-rtc"
BIN_DIR="$CACHE/livekit-server-$VERSION"
BIN="$BIN_DIR/server"
if [[ -n "${LIVEKIT_SERVER_BIN:-}" && -x "${LIVEKIT_SERVER_BIN}" ]]; then
  echo "$LIVEKIT_SERVER_BIN"; exit 0
fi
if [[ ! -x "$BIN" ]]; then
  command -v go >/dev/null || { echo "go is required to install the LiveKit server" >&2; exit 1; }
  mkdir -p "$BIN_DIR"
  echo "installing livekit-server $VERSION into $BIN_DIR (first run only, takes minutes)" >&2
  GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$BIN_DIR" GOFLAGS=-mod=mod \
    go install "github.com/livekit/livekit-server/cmd/server@$VERSION" >&2
fi
echo "$BIN"
