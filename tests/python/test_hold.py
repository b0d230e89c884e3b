"""A receiver whose Python side is stuck loses nothing and stays in the room.

Each scenario runs tests/interop/hold_peer.py twice, as a sender and as a receiver, in a
room of its own: the sender publishes one reliable packet every 50 ms for 30 s; about
2 s into the stream the receiver freezes for 25 s, either holding the GIL in a C call
("gil") or blocking its event loop with the GIL free ("loop"). The core must keep the
connection alive and buffer the data meanwhile: the sender never sees the receiver
leave, and the receiver, once free again, gets every packet exactly once and in order.

The script is plain `livekit.rtc` code and runs on both stacks, the official SDK and
ours, so each direction is covered. The scenarios take about 40 s each and mostly wait,
so a module fixture runs all of them at once (separate rooms, one server) and each test
only checks its scenario's outcome.

LK_HOLD_SCENARIOS=name,name,... runs only the named scenarios; besides the six in
SCENARIOS, "official-to-official-gil" and "official-to-official-loop" (the official SDK
on both ends) can be named, to check the harness itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest

from livekit import api
from lkserver import API_KEY, API_SECRET, LiveKitServer

ROOT = Path(__file__).resolve().parents[2]
PEER = ROOT / "tests" / "interop" / "hold_peer.py"

COUNT = 600  # one packet every INTERVAL: 30 s of data
INTERVAL = 0.05
HOLD_SECONDS = 25.0
HOLD_AFTER = 2.0  # after the receiver's first packet
GRACE = 20.0  # for the receiver to catch up after the sender's last packet
TIMEOUT = 100.0  # each script's own bound on everything it does
KILL_AFTER = TIMEOUT + 30.0  # the fixture kills a script that overruns its own bound


@dataclass(frozen=True)
class Scenario:
    sender: str  # "official" or "ours"
    receiver: str
    hold: str  # "gil" or "loop"

    @property
    def name(self) -> str:
        return f"{self.sender}-to-{self.receiver}-{self.hold}"


SCENARIOS = [
    Scenario("official", "ours", "gil"),
    Scenario("ours", "official", "gil"),
    Scenario("official", "ours", "loop"),
    Scenario("ours", "official", "loop"),
    Scenario("ours", "ours", "gil"),
    Scenario("ours", "ours", "loop"),
]
HARNESS_CHECKS = [
    Scenario("official", "official", "gil"),
    Scenario("official", "official", "loop"),
]


def selected() -> List[Scenario]:
    wanted = os.environ.get("LK_HOLD_SCENARIOS", "").strip()
    if not wanted:
        return SCENARIOS
    known = {s.name: s for s in SCENARIOS + HARNESS_CHECKS}
    names = [n.strip() for n in wanted.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"LK_HOLD_SCENARIOS: unknown {unknown}; known: {sorted(known)}")
    return [known[n] for n in names]


@dataclass
class Proc:
    """One run of hold_peer.py and, once it ended, what it printed."""

    role: str
    stack: str
    popen: "subprocess.Popen[bytes]"
    out_path: Path
    err_path: Path
    killed: bool = False
    lines: List[Dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    @property
    def returncode(self) -> Optional[int]:
        return self.popen.returncode

    @property
    def summary(self) -> Optional[Dict[str, Any]]:
        done = [x for x in self.lines if x.get("event") == "done"]
        return done[-1] if done else None

    def events(self, *names: str) -> List[Dict[str, Any]]:
        return [x for x in self.lines if x.get("event") in names]

    def collect(self) -> None:
        self.lines = []
        for raw in self.out_path.read_text(errors="replace").splitlines():
            try:
                obj = json.loads(raw)
            except ValueError:
                obj = {"event": "stdout", "text": raw}
            self.lines.append(obj if isinstance(obj, dict) else {"event": "stdout", "text": raw})
        self.stderr = self.err_path.read_text(errors="replace")

    def describe(self) -> str:
        """Its exit, its notable events and its stderr tail, for failure messages."""
        status = "killed (overran)" if self.killed else f"exit {self.returncode}"
        shown = [
            {k: v for k, v in x.items() if k not in ("received",)}
            for x in self.lines
            if x.get("event") != "done"
        ]
        summary = self.summary
        if summary is not None:
            summary = {k: v for k, v in summary.items() if k != "received"}
        tail = self.stderr[-3000:] if self.stderr else "(empty)"
        return (
            f"--- {self.role} ({self.stack} SDK): {status}\n"
            f"events: {json.dumps(shown)[-4000:]}\n"
            f"summary: {json.dumps(summary)}\n"
            f"stderr tail:\n{tail}\n"
        )


@dataclass
class Run:
    scenario: Scenario
    sender: Proc
    receiver: Proc
    seconds: float = 0.0

    def describe(self) -> str:
        return (
            f"scenario {self.scenario.name} ({self.seconds:.1f} s)\n"
            + self.receiver.describe()
            + self.sender.describe()
        )


def official_python() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "official-sdk.sh")],
        check=True, stdout=subprocess.PIPE, text=True,
    )
    return out.stdout.strip()


def make_token(room: str, identity: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return api.AccessToken(API_KEY, API_SECRET).with_identity(identity).with_grants(grants).to_jwt()


def start_scenario(
    scenario: Scenario, url: str, pythons: Dict[str, str], workdir: Path
) -> Run:
    room = f"hold-{scenario.name}-{uuid.uuid4().hex[:8]}"
    ids = {"sender": f"{scenario.name}-sender", "receiver": f"{scenario.name}-receiver"}
    env = dict(os.environ)
    env.pop("LIVEKIT_LIB_PATH", None)  # each SDK on its own core
    env["PYTHONUNBUFFERED"] = "1"
    common = [
        "--count", str(COUNT), "--interval", str(INTERVAL), "--topic", "hold",
        "--hold", scenario.hold, "--hold-seconds", str(HOLD_SECONDS),
        "--hold-after", str(HOLD_AFTER), "--grace", str(GRACE), "--timeout", str(TIMEOUT),
    ]
    procs: Dict[str, Proc] = {}
    # the receiver first, so it is in the room when the sender starts
    for role, other in (("receiver", "sender"), ("sender", "receiver")):
        stack = getattr(scenario, role)
        out_path = workdir / f"{scenario.name}-{role}.out"
        err_path = workdir / f"{scenario.name}-{role}.err"
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            popen = subprocess.Popen(
                [
                    pythons[stack], str(PEER), url, make_token(room, ids[role]), ids[other],
                    "--role", role, *common,
                ],
                stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env, cwd=str(ROOT),
            )
        procs[role] = Proc(role, stack, popen, out_path, err_path)
    return Run(scenario, procs["sender"], procs["receiver"])


@pytest.fixture(scope="module")
def hold_runs(
    server: LiveKitServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dict[str, Run]]:
    """Runs every selected scenario at once and waits for all of them."""
    workdir = tmp_path_factory.mktemp("hold")
    pythons = {"official": official_python(), "ours": sys.executable}
    began = time.monotonic()
    runs: Dict[str, Run] = {}
    try:
        for scenario in selected():
            runs[scenario.name] = start_scenario(scenario, server.url, pythons, workdir)
        deadline = began + KILL_AFTER
        for run in runs.values():
            for proc in (run.receiver, run.sender):
                try:
                    proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.killed = True
                    proc.popen.kill()
                    proc.popen.wait()
            run.seconds = time.monotonic() - began
        for run in runs.values():
            run.sender.collect()
            run.receiver.collect()
        total = time.monotonic() - began
        print(f"hold scenarios: {len(runs)} in {total:.1f} s", file=sys.stderr)
        yield runs
    finally:
        for run in runs.values():
            for proc in (run.receiver, run.sender):
                if proc.popen.poll() is None:
                    proc.popen.kill()
                    proc.popen.wait()


def first_difference(got: List[str], want: List[str]) -> str:
    """Explains how the received payloads differ from the sent ones."""
    seen: Dict[str, int] = {}
    for p in got:
        seen[p] = seen.get(p, 0) + 1
    missing = [p for p in want if p not in seen]
    duplicated = sorted((p for p, n in seen.items() if n > 1), key=got.index)
    unexpected = [p for p in seen if p not in set(want)]
    at = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    return (
        f"received {len(got)} of {len(want)}; {len(missing)} missing "
        f"(first {missing[:10]}, last {missing[-3:]}); duplicated {duplicated[:10]}; "
        f"unexpected {unexpected[:10]}; first difference at index {at}: "
        f"got {got[at:at + 5]} want {want[at:at + 5]}"
    )


@pytest.mark.parametrize("scenario", selected(), ids=lambda s: s.name)
def test_held_receiver_keeps_its_data_and_its_place(
    hold_runs: Dict[str, Run], scenario: Scenario
) -> None:
    run = hold_runs[scenario.name]
    sender, receiver = run.sender, run.receiver
    context = run.describe()
    sent = sender.summary
    got = receiver.summary
    assert sent is not None, f"the sender printed no summary\n{context}"
    assert got is not None, f"the receiver printed no summary\n{context}"

    # the receiver really froze, for the whole hold, in the middle of the stream
    held = receiver.events("hold_end")
    assert held and held[0]["held"] >= HOLD_SECONDS - 0.5, f"the receiver did not hold\n{context}"

    problems: List[str] = []
    # nobody was dropped from the room while the receiver was stuck
    if sent["disconnected"]:
        problems.append(f"the sender saw {sent['disconnected']} leave the room")
    if any(e["name"] == "disconnected" for e in got["room_events"]):
        problems.append("the receiver's room disconnected")
    # every packet, exactly once, in order
    want = [f"seq-{i}" for i in range(COUNT)]
    if sent.get("sent") != COUNT:
        problems.append(f"the sender sent {sent.get('sent')} of {COUNT}: {sent.get('errors')}")
    received = got.get("received")
    if not isinstance(received, list):
        problems.append("the receiver reported no payloads")
    elif received != want:
        problems.append(first_difference(received, want))
    if not sent.get("got_report"):
        problems.append("the sender never got the receiver's report")
    for proc in (sender, receiver):
        if proc.killed or proc.returncode != 0:
            status = "was killed" if proc.killed else f"exited {proc.returncode}"
            problems.append(f"the {proc.role} {status}")
    assert not problems, "; ".join(problems) + "\n" + context
