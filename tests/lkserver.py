"""Runs a real LiveKit server on loopback with free ports.

Used by the pytest fixtures and by the demo. As a script it starts a server, runs
the given command with LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET set, and
stops the server when the command ends:

    python3 tests/lkserver.py -- COMMAND [ARGS...]
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "devkey"
API_SECRET = "secret-secret-secret-secret-0123"


def server_binary() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "livekit-server.sh")],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return out.stdout.strip()


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveKitServer:
    """A LiveKit server process; use as a context manager."""

    def __init__(self, extra_yaml: str = "") -> None:
        self.extra_yaml = extra_yaml
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="lk-server-"))
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveKitServer":
        binary = server_binary()
        for _ in range(3):
            self.port = _free_port(socket.SOCK_STREAM)
            tcp = _free_port(socket.SOCK_STREAM)
            udp = _free_port(socket.SOCK_DGRAM)
            cfg = self.dir / "livekit.yaml"
            cfg.write_text(
                f"port: {self.port}\n"
                "bind_addresses: [127.0.0.1]\n"
                f"keys: {{{API_KEY}: {API_SECRET}}}\n"
                f"rtc: {{tcp_port: {tcp}, udp_port: {udp}, use_external_ip: false, "
                "node_ip: 127.0.0.1, enable_loopback_candidate: true}\n"
                "turn: {enabled: false}\n"
                "room: {auto_create: true}\n"
                "logging: {level: warn}\n" + self.extra_yaml
            )
            log = open(self.dir / "server.log", "wb")
            self.proc = subprocess.Popen([binary, "--config", str(cfg)], stdout=log, stderr=log)
            if self._wait_ready(20.0):
                return self
            self.stop()
        raise RuntimeError(f"LiveKit server did not start; see {self.dir / 'server.log'}")

    def restart(self) -> None:
        """Stops the server and starts it again on the same ports (clients see the
        server go away and come back)."""
        self.stop()
        log = open(self.dir / "server.log", "ab")
        cfg = self.dir / "livekit.yaml"
        self.proc = subprocess.Popen([server_binary(), "--config", str(cfg)], stdout=log, stderr=log)
        if not self._wait_ready(20.0):
            raise RuntimeError(f"LiveKit server did not restart; see {self.dir / 'server.log'}")

    def _wait_ready(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.http_url + "/", timeout=1) as r:
                    if r.status == 200:
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LiveKitServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with LiveKitServer() as server:
        env = dict(os.environ)
        env.update(LIVEKIT_URL=server.url, LIVEKIT_API_KEY=API_KEY, LIVEKIT_API_SECRET=API_SECRET)
        print(f"LiveKit server running at {server.url}", file=sys.stderr, flush=True)
        return subprocess.call(argv, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
