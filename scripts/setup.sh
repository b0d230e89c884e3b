#!/usr/bin/env bash
# Installs everything the build, tests and demo need on a fresh machine; each step is
# skipped when already done, so it is cheap to run every time.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"

need_apt=()
# ip and iptables: the network fault tests build their own network (tests/netns.py);
# openssl and turnserver (coturn): its relay tests make a test CA and run a TURN server.
for tool in cmake pkg-config gcc g++ go ip iptables openssl turnserver; do
  command -v "$tool" >/dev/null 2>&1 || need_apt+=("$tool")
done
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if ((${#need_apt[@]})); then
  pkgs=()
  for t in "${need_apt[@]}"; do
    case "$t" in
      go) pkgs+=(golang-go) ;;
      g++) pkgs+=(g++) ;;
      ip) pkgs+=(iproute2) ;;
      turnserver) pkgs+=(coturn) ;;
      *) pkgs+=("$t") ;;
    esac
  done
  echo "installing Debian packages: ${pkgs[*]}" >&2
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >&2
fi
command -v cargo >/dev/null || { echo "Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
# The shared protocol core is also built for the ESP32-C3.
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx riscv32imc-unknown-none-elf; then
  rustup target add riscv32imc-unknown-none-elf >&2
fi

"$ROOT/scripts/livekit-server.sh" >/dev/null
"$ROOT/scripts/official-sdk.sh" >/dev/null
