# Shared environment of the project's scripts: caches live outside the checkout.
export LK_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/livekit-rtc"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$LK_CACHE/target}"
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
mkdir -p "$LK_CACHE"
