#!/usr/bin/env bash
# Bounded fuzzing of the inputs the core takes from outside: FFI requests, signal
# messages, data packets, device link frames, STUN answers and ICE server URLs (the
# cargo-fuzz targets in fuzz/).
#
# Installs what it needs when missing (a nightly toolchain through rustup, and
# cargo-fuzz), builds the targets (AddressSanitizer, debug assertions and overflow
# checks) in a target dir of their own under the cache, then runs each for
# FUZZ_SECONDS (default 20) on its corpus in fuzz/corpus/<target>/. Any crash,
# panic, timeout (10 s for one input) or limit hit (2 GiB RSS, 512 MiB in one
# allocation) fails the script; the input that did it is kept under
# FUZZ_ARTIFACTS (default: the cache's fuzz-artifacts/, emptied per target at each
# run) and the command that replays it is printed. One summary line per target: runs, coverage, corpus.
#
#   FUZZ_SECONDS=300 bash scripts/fuzz.sh          # longer
#   FUZZ_TARGETS="data_packet" bash scripts/fuzz.sh
#   FUZZ_MERGE=1 bash scripts/fuzz.sh              # keep what found new coverage in
#                                                  # fuzz/corpus (never in CI)
# New seeds of every kind: (cd fuzz && cargo +nightly run --example seed).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/env.sh"

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
FUZZ_MERGE="${FUZZ_MERGE:-0}"
read -r -a TARGETS <<<"${FUZZ_TARGETS:-ffi_request signal_response data_packet link_frames ice}"
TARGET_DIR="$LK_CACHE/target-fuzz"
ARTIFACTS="${FUZZ_ARTIFACTS:-$LK_CACHE/fuzz-artifacts}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing a nightly toolchain"
  rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

HOST="$(rustc +nightly -vV | sed -n 's/^host: //p')"
# Release with debug assertions (cargo-fuzz's default; `-O` would drop them).
nice -n 10 cargo +nightly fuzz build --fuzz-dir "$ROOT/fuzz" --target "$HOST" \
  --target-dir "$TARGET_DIR"
BIN="$TARGET_DIR/$HOST/release"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$ARTIFACTS"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_odr_violation=0}"

# The value after `key:` on the last line of $2 that has it.
stat_of() {
  grep -o "$1: *[0-9]*" "$2" | tail -n 1 | grep -o '[0-9]*$' || echo "?"
}

failed=()
for t in "${TARGETS[@]}"; do
  corpus="$ROOT/fuzz/corpus/$t"
  seeds="$(find "$corpus" -type f | wc -l)"
  mkdir -p "$WORK/$t"
  rm -f "$ARTIFACTS/$t-"*
  log="$WORK/$t.log"
  status=0
  # New inputs go to the scratch dir (first), the kept corpus is only read.
  "$BIN/$t" "$WORK/$t" "$corpus" \
    -max_total_time="$FUZZ_SECONDS" -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -artifact_prefix="$ARTIFACTS/$t-" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs="$(stat_of stat::number_of_executed_units "$log")"
  rate="$(stat_of stat::average_exec_per_sec "$log")"
  rss="$(stat_of stat::peak_rss_mb "$log")"
  units="$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -o 'corp: [0-9]*' | grep -o '[0-9]*$' || echo "?")"
  echo "fuzz $t: $runs runs in ${FUZZ_SECONDS}s ($rate/s), cov $(stat_of cov "$log"), ft $(stat_of ft "$log"), corpus $seeds -> $units, peak rss ${rss} MB"
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    echo "---- fuzz $t FAILED (exit $status); its report:"
    grep -v -E '^#[0-9]+ +(NEW|REDUCE|pulse)|NEW_FUNC' "$log" | tail -n 80
    for a in "$ARTIFACTS/$t-"*; do
      [ -e "$a" ] && echo "replay: $BIN/$t $a"
    done
    echo "----"
  elif [ "$FUZZ_MERGE" = "1" ]; then
    before="$seeds"
    "$BIN/$t" -merge=1 "$corpus" "$WORK/$t" >>"$log" 2>&1
    echo "fuzz $t: corpus $before -> $(find "$corpus" -type f | wc -l) files (merged)"
  fi
done

if [ "${#failed[@]}" -ne 0 ]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs under $ARTIFACTS)"
  exit 1
fi
echo "fuzz: ${#TARGETS[@]} targets, ${FUZZ_SECONDS}s each, no crash"
