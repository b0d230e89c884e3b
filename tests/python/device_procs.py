"""What the device tests share: the project's binaries built with its cargo
environment, line-driven device processes (the simulated device, the C demo), the
gateway process, and the agent's side of the demo app (its `add` method, text stream
readers)."""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Set

from livekit import rtc

ROOT = Path(__file__).resolve().parents[2]


def cargo(*args: str) -> str:
    """Runs a command with the project's cargo environment; returns its stdout."""
    script = "source scripts/env.sh >/dev/null && " + " ".join(args)
    out = subprocess.run(["bash", "-c", script], cwd=ROOT, check=True, capture_output=True, text=True)
    return out.stdout


def debug_dir() -> Path:
    """Where cargo puts debug builds (the shared target directory)."""
    return Path(cargo('echo "$CARGO_TARGET_DIR"').strip()) / "debug"


class LineProcess:
    """A process driven by commands on stdin, reporting one tab-separated line per
    event on stdout (read on a thread)."""

    def __init__(self, argv: Sequence[str], env: Optional[Dict[str, str]] = None) -> None:
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.q: "queue.Queue[str]" = queue.Queue()
        self.seen: List[str] = []
        out = self.proc.stdout
        assert out is not None

        def pump() -> None:
            for line in out:
                self.q.put(line.rstrip("\n"))

        threading.Thread(target=pump, daemon=True).start()

    def send(self, command: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    async def expect(self, pred: Callable[[List[str]], bool], timeout: float = 20.0) -> List[str]:
        """The first line (not taken yet) whose fields satisfy `pred`."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.seen:
                fields = line.split("\t")
                if pred(fields):
                    self.seen.remove(line)
                    return fields
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing matched within {timeout}s; seen: {self.seen}")
            try:
                self.seen.append(self.q.get_nowait())
            except queue.Empty:
                await asyncio.sleep(0.02)

    def stop(self) -> int:
        """Asks the process to quit (kills it if it does not); its exit status."""
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class GatewayProcess:
    """A `livekit-gateway` process on a loopback port."""

    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.proc: Optional["subprocess.Popen[str]"] = None
        self.addr = ""

    def start(self, listen: str = "127.0.0.1:0", grace_s: int = 5) -> "GatewayProcess":
        self.proc = subprocess.Popen(
            [str(self.binary), "--listen", listen, "--grace", str(grace_s)],
            stdout=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        assert line and line[0] == "listening", line
        self.addr = line[1]
        return self

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def answer_add(agent: rtc.Room) -> None:
    """The agent's method the devices call: `add` of "a,b"."""

    def add(data: rtc.RpcInvocationData) -> str:
        a, b = data.payload.split(",")
        return str(int(a) + int(b))

    agent.local_participant.register_rpc_method("add", add)


def text_reader(
    target: "asyncio.Queue[str]", tasks: "Set[asyncio.Future[None]]"
) -> Callable[[rtc.TextStreamReader, str], None]:
    """A text stream handler that puts each whole text in `target`."""

    def handler(reader: rtc.TextStreamReader, sender: str) -> None:
        async def read() -> None:
            await target.put(await reader.read_all())

        t = asyncio.ensure_future(read())
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    return handler


async def rpc_both_ways(agent: rtc.Room, device: LineProcess, identity: str) -> None:
    """The agent calls the device's `echo`; the device calls the agent's `add`."""
    got = await agent.local_participant.perform_rpc(
        destination_identity=identity, method="echo", payload="ping ✓"
    )
    assert got == "ping ✓"
    invoked = await device.expect(lambda f: f[0] == "invoked")
    assert invoked[1:] == ["agent", "echo", "ping ✓"]
    device.send("rpc agent add 2,3")
    sent = await device.expect(lambda f: f[0] == "rpc-sent")
    result = await device.expect(lambda f: f[0] == "rpc-result" and f[1] == sent[1])
    assert result[2:] == ["ok", "5"], result
