"""Side-by-side benchmark on one LiveKit server, in one run:

- official: the official Python SDK on its own core (PyPI livekit 1.2.1, libwebrtc)
- official-on-ours: the same official Python code on our core (LIVEKIT_LIB_PATH)
- ours: our livekit.rtc package (PyO3 binding, our core)

Each runs bench/worker.py in its own process, one after the other, and prints a table.

    python3 bench/bench.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from lkserver import API_KEY, API_SECRET, LiveKitServer  # noqa: E402


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True).stdout.strip()


def main() -> int:
    official = sh("bash", str(ROOT / "scripts" / "official-sdk.sh"))
    ours = sh("bash", str(ROOT / "scripts" / "python-env.sh"))
    target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache/livekit-rtc/target")
    ours_lib = Path(target) / "release" / "liblivekit_ffi.so"
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "livekit-ffi"], check=True, cwd=ROOT)
    stacks = [
        ("official", official, {}),
        ("official-on-ours", official, {"LIVEKIT_LIB_PATH": str(ours_lib)}),
        ("ours", ours, {}),
    ]
    rows = []
    with LiveKitServer() as server:
        for label, python, extra in stacks:
            env = dict(os.environ, **extra)
            out = subprocess.run(
                [python, str(ROOT / "bench" / "worker.py"), server.url, API_KEY, API_SECRET, label],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
                timeout=600,
            )
            lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
            if out.returncode != 0 or not lines:
                print(f"{label}: failed (exit {out.returncode})", file=sys.stderr)
                continue
            rows.append(json.loads(lines[-1]))
    head = f"{'stack':<18}{'connect ms':>11}{'1KiB Mbit/s':>13}{'p50 ms':>8}{'p99 ms':>8}"
    head += f"{'15KiB Mbit/s':>14}{'p50 ms':>8}{'p99 ms':>8}{'ffi req us':>12}"
    print(head)
    for r in rows:
        s, l = r["1KiB"], r["15KiB"]
        print(
            f"{r['label']:<18}{r['connect_ms_median']:>11.1f}{s['mbit_s']:>13.1f}{s['p50_ms']:>8.2f}"
            f"{s['p99_ms']:>8.2f}{l['mbit_s']:>14.1f}{l['p50_ms']:>8.2f}{l['p99_ms']:>8.2f}"
            f"{r['ffi_request_us']:>12.2f}"
        )
    return 0 if len(rows) == len(stacks) else 1


if __name__ == "__main__":
    sys.exit(main())
