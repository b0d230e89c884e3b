#!/usr/bin/env bash
# The firmware side, checked without hardware:
#  1. builds the ESP32-C3 image (firmware/esp32c3, release), turns the ELF into a
#     flashable .bin with esptool and prints what esptool reads back from it;
#  2. runs livekit-core's unit tests bare-metal on rv32 under QEMU (virt machine,
#     firmware/rv32-selftest) and fails unless every one passed.
# Installs what it needs when missing: the Rust target, esptool (PyPI, in its own
# virtualenv) and QEMU (Debian's qemu-system-misc). Builds go to a cache directory
# outside the checkout. LK_URL / LK_TOKEN, when set, are built into the image.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"

TARGET=riscv32imc-unknown-none-elf
# Our own target dir: these crates have their own workspaces and flags.
export CARGO_TARGET_DIR="$LK_CACHE/target-firmware"
# The crates' .cargo/config.toml carry the linker scripts and cfgs; a RUSTFLAGS
# from the environment would replace them.
unset RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
ESPTOOL_VENV="$LK_CACHE/esptool-venv"
QEMU_TIMEOUT="${QEMU_TIMEOUT:-300}"
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"

apt_install() {
  echo "installing Debian packages: $*" >&2
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >&2
}

# ---- prerequisites ------------------------------------------------------------------
command -v cargo >/dev/null || { echo "Rust (cargo) is required: https://rustup.rs" >&2; exit 1; }
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$TARGET"; then
  rustup target add "$TARGET" >&2
fi
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then apt_install python3-venv; fi
command -v qemu-system-riscv32 >/dev/null || apt_install qemu-system-misc

esptool_bin() {
  for name in esptool esptool.py; do
    if [[ -x "$ESPTOOL_VENV/bin/$name" ]]; then echo "$ESPTOOL_VENV/bin/$name"; return 0; fi
  done
  return 1
}
if ! ESPTOOL="$(esptool_bin)"; then
  echo "installing esptool into $ESPTOOL_VENV" >&2
  rm -rf "$ESPTOOL_VENV"
  python3 -m venv "$ESPTOOL_VENV"
  "$ESPTOOL_VENV/bin/pip" install -q --disable-pip-version-check "esptool>=5,<6" >&2
  ESPTOOL="$(esptool_bin)"
fi
# esptool 5 names its commands with dashes, older ones with underscores.
IMAGE_INFO=image-info
"$ESPTOOL" --help 2>/dev/null | grep -q 'image-info' || IMAGE_INFO=image_info

# ---- 1. the ESP32-C3 image ----------------------------------------------------------
echo "== firmware: ESP32-C3 image (firmware/esp32c3, $TARGET, release)"
if [[ -n "${LK_URL:-}" && -n "${LK_TOKEN:-}" ]]; then
  echo "LK_URL and LK_TOKEN are set: the image joins $LK_URL on boot"
else
  echo "LK_URL / LK_TOKEN not set: the image will not join a room (it says so on its log)"
fi
(cd "$ROOT/firmware/esp32c3" && cargo build --release)
ELF="$CARGO_TARGET_DIR/$TARGET/release/livekit-esp32c3"
BIN="$ELF.bin"
"$ESPTOOL" --chip esp32c3 elf2image \
  --flash-mode dio --flash-freq 80m --flash-size 4MB -o "$BIN" "$ELF"
INFO="$("$ESPTOOL" "$IMAGE_INFO" "$BIN")"
echo "$INFO"
grep -q 'ESP32-C3' <<<"$INFO" || { echo "esptool does not see an ESP32-C3 image in $BIN" >&2; exit 1; }
grep -Eq '^Checksum: .*\(valid\)' <<<"$INFO" || { echo "the image's checksum is not valid" >&2; exit 1; }
grep -q 'Project name: livekit-esp32c3' <<<"$INFO" || { echo "the image has no app descriptor" >&2; exit 1; }
echo "ELF:   $ELF ($(stat -c %s "$ELF") bytes, with debug info)"
echo "image: $BIN ($(stat -c %s "$BIN") bytes; flash it at 0x10000 after ESP-IDF's bootloader and partition table)"

# ---- 2. livekit-core's tests on rv32 under QEMU -------------------------------------
echo "== firmware: livekit-core's unit tests on rv32 bare metal (QEMU virt, firmware/rv32-selftest)"
(cd "$ROOT/firmware/rv32-selftest" && cargo build --release)
SELFTEST="$CARGO_TARGET_DIR/$TARGET/release/livekit-rv32-selftest"
status=0
OUT="$(timeout "$QEMU_TIMEOUT" qemu-system-riscv32 -machine virt -nographic -bios none \
  -kernel "$SELFTEST" </dev/null 2>&1)" || status=$?
OUT="$(tr -d '\r' <<<"$OUT")"
echo "$OUT"
if ((status == 124)); then
  echo "QEMU did not finish within ${QEMU_TIMEOUT}s" >&2
  exit 1
fi
if ((status != 0)); then
  echo "the rv32 selftest failed (QEMU exit status $status)" >&2
  exit 1
fi
summary="$(grep -E '^test result: ok\. [0-9]+ passed' <<<"$OUT" || true)"
announced="$(sed -nE 's/^running ([0-9]+) tests.*/\1/p' <<<"$OUT")"
ran="$(grep -cE '^test .* \.\.\. ok$' <<<"$OUT" || true)"
if [[ -z "$summary" || -z "$announced" || "$announced" -eq 0 || "$ran" -ne "$announced" ]]; then
  echo "the rv32 selftest did not report all its tests passing (announced ${announced:-?}, passed $ran)" >&2
  exit 1
fi
echo "rv32 selftest: $ran of $announced tests passed under QEMU"
