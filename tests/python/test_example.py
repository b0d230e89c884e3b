"""The README demo, examples/basic_room.py, runs end to end and exits 0."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def test_basic_room_example(server: Any) -> None:
    from lkserver import API_KEY, API_SECRET

    env = dict(
        os.environ,
        LIVEKIT_URL=server.url,
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        LIVEKIT_ROOM="example-test",
        LIVEKIT_RUN_SECS="0.5",
    )
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "basic_room.py")],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "[bob] data from alice on 'chat': hi bob!" in out
    assert "[alice] data from bob on 'chat': hi alice, got: hi bob!" in out
    assert "[bob] alice metadata: '' -> 'hello from alice'" in out
    assert out.rstrip().endswith("done")
