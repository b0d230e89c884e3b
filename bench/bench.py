"""Side-by-side benchmark on one LiveKit server, in one run:

- official: the official Python SDK on its own core (PyPI livekit 1.2.1, libwebrtc)
- official-on-ours: the same official Python code on our core (LIVEKIT_LIB_PATH)
- ours: our livekit.rtc package (PyO3 binding, our core)

Five parts, each run for every stack, one process at a time, and printed as a table:

- basic: bench/worker.py (connect time, reliable throughput and latency at 1 KiB and
  15 KiB, cost of one FFI request).
- hold: bench/hold.py. A sender publishes a reliable 100-byte packet every 50 ms for
  30 s; the receiver (the stack under test, another process) keeps the GIL on its
  event-loop thread for 25 s (`ctypes.PyDLL(None).sleep(25)`) starting 2 s after its
  first packet. Reports what arrived, in which order, and how fast it caught up.
- burst: bench/burst.py. The sender (the stack under test) awaits 50,000 concurrent
  `publish_data(1 KiB, reliable=True)` calls through `asyncio.gather`, sampling its RSS;
  a receiver in another process counts what arrives. Bounded by --burst-timeout and,
  since the official SDK's RSS grows by gigabytes here, by --burst-rss-cap.
- rpc: bench/rpc_stream.py. RPC round trips (sequential echo calls of 100 bytes, p50/p99)
  and data-stream throughput (a --stream-mb byte stream via send_bytes and a text stream
  of multi-byte characters via send_text, read piece by piece; MB/s from the first
  byte sent to the last byte read), two rooms in one process.
- audio: bench/audio.py. Whole-process CPU (user + sys) per published and per
  subscribed 48 kHz mono track over --audio-seconds of audio, minus the same
  process's idle baseline (connected, no track, same duration), for --audio-tracks
  tracks at once; and mouth-to-ear latency (a 10 ms full-scale click every 500 ms into
  an AudioSource with queue_size_ms=--audio-queue-ms, detected by the subscriber in
  its AudioStream) for every pairing of publisher and subscriber stack. The other end
  of the CPU runs is --audio-peer (official by default) for every stack.

The other end (the "peer"): in hold the sender is the official SDK on its own core by
default (--hold-sender same: the stack under test), so only the receiver changes between
stacks; in burst the receiver is the stack under test by default, so the delivery figures
are that stack's end to end (--burst-receiver official: always the official SDK). The
burst table starts with an "asyncio only" row: the same gather over coroutines that only
await a future, i.e. the Python share of the RSS growth.

    python3 bench/bench.py                              # everything (~5 min + builds)
    python3 bench/bench.py --only hold,burst --stacks official --burst 10000
    BENCH_BURST=10000 BENCH_BURST_TIMEOUT=60 python3 bench/bench.py --only burst

--no-build skips `pip install .` and the cargo build (uses what is installed/built);
--lib PATH runs official-on-ours on a given liblivekit_ffi.so (e.g. an older build).
BENCH_JSON=FILE also writes every figure as JSON. Worker logs (stderr) are kept in a
temporary directory, printed at the end, when a part fails.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path.insert(0, str(ROOT / "tests"))

from lkserver import API_KEY, API_SECRET, LiveKitServer  # noqa: E402

PARTS = ("basic", "hold", "burst", "rpc", "audio")
STACKS = ("official", "official-on-ours", "ours")


def sh(*args: str, env: Optional[Dict[str, str]] = None) -> str:
    return subprocess.run(args, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout.strip()


@dataclass
class Stack:
    label: str
    python: str
    env: Dict[str, str] = field(default_factory=dict)


# ---- worker processes ------------------------------------------------------------------


class Worker:
    """One bench worker process: JSON lines on its stdout, commands on its stdin,
    stderr into a log file. `close()` always reaps it (terminate, then kill)."""

    def __init__(self, tag: str, stack: Stack, argv: List[str], logdir: Path) -> None:
        self.tag = tag
        self.log_path = logdir / f"{tag}.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [stack.python, *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=stack.env,
            text=True,
            bufsize=1,
        )
        self._lines: "queue.Queue[Dict[str, Any]]" = queue.Queue()
        self.seen: Dict[str, Dict[str, Any]] = {}
        threading.Thread(target=self._read, name=f"read-{tag}", daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                try:
                    self._lines.put(json.loads(line))
                except ValueError:
                    pass
        self._lines.put({"event": "exit"})

    def has(self, event: str) -> bool:
        """Whether `event` has come (without waiting)."""
        while True:
            try:
                msg = self._lines.get_nowait()
            except queue.Empty:
                return event in self.seen
            self.seen.setdefault(str(msg.get("event")), msg)

    def ended(self) -> bool:
        return self.has("exit")

    def expect(self, event: str, timeout: float) -> Optional[Dict[str, Any]]:
        """The first `event` message, waiting up to `timeout` s; None if it did not come
        in time or the process ended without it."""
        deadline = time.monotonic() + timeout
        while not self.has(event):
            if "exit" in self.seen:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                msg = self._lines.get(timeout=left)
            except queue.Empty:
                return None
            self.seen.setdefault(str(msg.get("event")), msg)
        return self.seen[event]

    def send(self, line: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        except (OSError, ValueError):
            pass  # already gone

    def close(self, timeout: float = 15) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # end of input: the worker stops
        except OSError:
            pass
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log_tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + l for l in text[-lines:])


def failure(label: str, what: str, *workers: Optional[Worker]) -> Dict[str, Any]:
    print(f"{label}: {what}", file=sys.stderr)
    for w in workers:
        if w is not None and w.log_tail():
            print(f"  {w.tag} (exit {w.proc.poll()}), {w.log_path}:\n{w.log_tail()}", file=sys.stderr)
    return {"label": label, "error": what}


# ---- parts -----------------------------------------------------------------------------


def run_basic(server: LiveKitServer, stack: Stack) -> Optional[Dict[str, Any]]:
    out = subprocess.run(
        [stack.python, str(BENCH / "worker.py"), server.url, API_KEY, API_SECRET, stack.label],
        env=stack.env,
        stdout=subprocess.PIPE,
        text=True,
        timeout=600,
    )
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        print(f"{stack.label}: failed (exit {out.returncode})", file=sys.stderr)
        return None
    return dict(json.loads(lines[-1]))


def run_hold(server: LiveKitServer, stack: Stack, peer: Stack, a: argparse.Namespace, logdir: Path) -> Dict[str, Any]:
    room = f"bench-hold-{stack.label}-{uuid.uuid4().hex[:6]}"
    count = round(a.hold_duration / a.hold_interval)
    common = [server.url, API_KEY, API_SECRET, room]
    rx = Worker(f"hold-rx-{stack.label}", stack,
                [str(BENCH / "hold.py"), "recv", *common, str(a.hold_after), str(a.hold_seconds), str(count)], logdir)
    tx: Optional[Worker] = None
    try:
        if rx.expect("ready", 60) is None:
            return failure(stack.label, "hold: receiver did not connect", rx)
        tx = Worker(f"hold-tx-{stack.label}", peer,
                    [str(BENCH / "hold.py"), "send", *common, str(count), str(a.hold_interval)], logdir)
        if tx.expect("done", 60 + count * a.hold_interval + 30) is None:
            return failure(stack.label, "hold: sender did not finish", tx, rx)
        rx.expect("complete", 15)  # time to catch up after the sender's last packet
        tx.send("stop")
        sent = tx.expect("result", 20)
        rx.send("stop")
        got = rx.expect("result", 20)
        if sent is None or got is None:
            return failure(stack.label, "hold: no result", tx, rx)
        return {"label": stack.label, "peer": peer.label, "count": count, "tx": sent, "rx": got}
    finally:
        for w in (tx, rx):
            if w is not None:
                w.close()


def run_burst(server: LiveKitServer, stack: Stack, peer: Stack, a: argparse.Namespace, logdir: Path) -> Dict[str, Any]:
    room = f"bench-burst-{stack.label}-{uuid.uuid4().hex[:6]}"
    common = [server.url, API_KEY, API_SECRET, room, str(a.burst)]
    rx = Worker(f"burst-rx-{stack.label}", peer, [str(BENCH / "burst.py"), "recv", *common], logdir)
    tx: Optional[Worker] = None
    try:
        if rx.expect("ready", 60) is None:
            return failure(stack.label, "burst: receiver did not connect", rx)
        tx = Worker(f"burst-tx-{stack.label}", stack,
                    [str(BENCH / "burst.py"), "send", *common, str(a.burst_size), str(a.burst_rss_cap)], logdir)
        start = tx.expect("t0", 120)
        if start is None:
            return failure(stack.label, "burst: sender did not start", tx, rx)
        end = float(start["t0"]) + a.burst_timeout
        # Until everything returned and arrived, the time limit, or an end (the sender
        # ends itself past its RSS cap).
        while time.monotonic() < end and not (tx.ended() or rx.ended()):
            if rx.has("complete") and tx.has("published"):
                break
            time.sleep(0.1)
        complete = rx.has("complete")
        published = tx.seen.get("published")
        stop_at = min(time.monotonic(), end)
        tx.send("stop")
        sent = tx.expect("result", 30)
        rx.send(f"stop {stop_at!r}")
        got = rx.expect("result", 30)
        if sent is None or got is None:
            return failure(stack.label, "burst: no result", tx, rx)
        return {
            "label": stack.label,
            "peer": peer.label,
            "t0": start["t0"],
            "stop_at": stop_at,
            "complete": complete,
            "published": published,
            "tx": sent,
            "rx": got,
        }
    finally:
        for w in (tx, rx):
            if w is not None:
                w.close()


def run_rpc(server: LiveKitServer, stack: Stack, a: argparse.Namespace) -> Dict[str, Any]:
    argv = [str(BENCH / "rpc_stream.py"), server.url, API_KEY, API_SECRET, stack.label,
            str(a.rpc_calls), str(a.stream_mb)]
    try:
        out = subprocess.run([stack.python, *argv], env=stack.env, stdout=subprocess.PIPE,
                             text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {"label": stack.label, "error": "timed out"}
    lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
    if out.returncode != 0 or not lines:
        return {"label": stack.label, "error": f"exit {out.returncode}"}
    return dict(json.loads(lines[-1]))


def print_rpc(rows: List[Dict[str, Any]], a: argparse.Namespace) -> None:
    print()
    print(f"RPC: {a.rpc_calls} sequential echo calls of 100 bytes. Streams: {a.stream_mb:g} MB, "
          "MB/s from the first byte sent to the last byte read.")
    print(f"{'stack':<18}{'rpc ok':>8}{'p50 ms':>8}{'p99 ms':>8}{'calls/s':>9}"
          f"{'bytes MB/s':>12}{'complete':>10}{'text MB/s':>11}{'complete':>10}")
    for r in rows:
        if "error" in r:
            print(f"{r['label']:<18}failed: {r['error']}")
            continue
        rpc, b, t = r["rpc"], r.get("bytes_stream", {}), r.get("text_stream", {})
        print(f"{r['label']:<18}{rpc['ok']:>8}{rpc['p50_ms']:>8.2f}{rpc['p99_ms']:>8.2f}"
              f"{rpc['calls_per_s']:>9.0f}{num(b.get('mb_s'), 12, 2)}{yes(b.get('complete')):>10}"
              f"{num(t.get('mb_s'), 11, 2)}{yes(t.get('complete')):>10}")


def run_floor(python: Stack, a: argparse.Namespace, logdir: Path) -> Dict[str, Any]:
    """The burst's gather with no SDK: the Python share of the RSS growth."""
    w = Worker("burst-floor", python, [str(BENCH / "burst.py"), "floor", str(a.burst), str(a.burst_size)], logdir)
    try:
        got = w.expect("result", 120)
        if got is None:
            return failure("asyncio only", "burst floor: no result", w)
        return {"label": "asyncio only", "tx": got}
    finally:
        w.close()


def run_audio_cpu(server: LiveKitServer, stack: Stack, peer: Stack, role: str, a: argparse.Namespace,
                  logdir: Path) -> Dict[str, Any]:
    """role "pub": the stack under test publishes, `peer` listens; "sub": `peer` publishes
    (on the subscriber's word, relayed here), the stack under test subscribes."""
    room = f"bench-audio-{role}-{stack.label}-{uuid.uuid4().hex[:6]}"
    common = [server.url, API_KEY, API_SECRET, room]
    helper = "listen" if role == "pub" else "feed"
    other = Worker(f"audio-{helper}-{stack.label}", peer, [str(BENCH / "audio.py"), helper, *common], logdir)
    w: Optional[Worker] = None
    try:
        if other.expect("ready", 60) is None:
            return failure(stack.label, f"audio {role}: {helper} did not connect", other)
        counts = ",".join(str(n) for n in a.audio_counts)
        w = Worker(f"audio-{role}-{stack.label}", stack,
                   [str(BENCH / "audio.py"), role, *common, str(a.audio_seconds), counts], logdir)
        per_phase = a.audio_seconds + 60
        if role == "sub":
            for n in a.audio_counts:
                if w.expect(f"want-{n}", 60 + per_phase) is None:
                    return failure(stack.label, f"audio sub: no request for {n} tracks", w, other)
                other.send(f"publish {n}")
                if other.expect(f"published-{n}", 60) is None:
                    return failure(stack.label, f"audio sub: the feeder did not publish {n} tracks", other, w)
        got = w.expect("result", 60 + per_phase * (len(a.audio_counts) + 1))
        if got is None:
            return failure(stack.label, f"audio {role}: no result", w, other)
        other.send("stop")
        seen = other.expect("result", 20)
        if seen is None:
            return failure(stack.label, f"audio {role}: no result from {helper}", other, w)
        return {"label": stack.label, "peer": peer.label, "phases": got["phases"], "peer_result": seen}
    finally:
        for x in (w, other):
            if x is not None:
                x.close()


def run_audio_latency(server: LiveKitServer, tx_stack: Stack, rx_stack: Stack, a: argparse.Namespace,
                      logdir: Path) -> Dict[str, Any]:
    label = f"{tx_stack.label} -> {rx_stack.label}"
    room = f"bench-audio-lat-{uuid.uuid4().hex[:6]}"
    common = [server.url, API_KEY, API_SECRET, room]
    tag = f"{tx_stack.label}-{rx_stack.label}"
    rx = Worker(f"audio-clickrx-{tag}", rx_stack, [str(BENCH / "audio.py"), "clickrx", *common], logdir)
    tx: Optional[Worker] = None
    try:
        if rx.expect("ready", 60) is None:
            return failure(label, "audio latency: subscriber did not connect", rx)
        tx = Worker(f"audio-clicktx-{tag}", tx_stack,
                    [str(BENCH / "audio.py"), "clicktx", *common, str(a.audio_clicks),
                     str(a.audio_click_interval), str(a.audio_queue_ms)], logdir)
        if tx.expect("publishing", 60) is None:
            return failure(label, "audio latency: publisher did not publish", tx, rx)
        if rx.expect("listening", 60) is None:
            return failure(label, "audio latency: subscriber got no audio", rx, tx)
        tx.send("go")
        done = tx.expect("done", 60 + a.audio_clicks * a.audio_click_interval)
        if done is None:
            return failure(label, "audio latency: publisher did not finish", tx, rx)
        rx.send("stop")
        got = rx.expect("result", 20)
        tx.send("stop")
        if got is None:
            return failure(label, "audio latency: no result", rx, tx)
        sent = [float(c["at"]) for c in done["clicks"]]
        onsets = sorted((float(ear), float(arrival)) for ear, arrival in got["onsets"])
        # Each click's latency: the first onset from its send time to the next click's
        # (by arrival; the ear time of the same onset with it).
        latencies: List[float] = []
        arrivals: List[float] = []
        for i, at in enumerate(sent):
            until = sent[i + 1] if i + 1 < len(sent) else at + a.audio_click_interval
            match = [o for o in onsets if at <= o[1] < until]
            if match:
                latencies.append(match[0][0] - at)
                arrivals.append(match[0][1] - at)
        waits = sorted(float(c["wait"]) for c in done["clicks"])
        queued = sorted(float(c["queued"]) for c in done["clicks"])
        return {
            "label": label,
            "clicks": len(sent),
            "onsets": len(onsets),
            "latencies_ms": [x * 1000 for x in latencies],
            "arrival_latencies_ms": [x * 1000 for x in arrivals],
            "skipped_frames": got.get("skipped"),
            "capture_wait_ms_p50": waits[len(waits) // 2] * 1000 if waits else None,
            "queued_ms_p50": queued[len(queued) // 2] * 1000 if queued else None,
            "late_p50_ms": done["late_p50_ms"],
            "late_max_ms": done["late_max_ms"],
        }
    finally:
        for w in (tx, rx):
            if w is not None:
                w.close()


def run_audio(server: LiveKitServer, chosen: List[Stack], stacks: Dict[str, Stack], a: argparse.Namespace,
              logdir: Path) -> Dict[str, Any]:
    peer = stacks[a.audio_peer]
    out: Dict[str, Any] = {"peer": peer.label, "pub": [], "sub": [], "latency": []}
    for role in ("pub", "sub"):
        if role not in a.audio_parts_list:
            continue
        for stack in chosen:
            t = time.monotonic()
            print(f"[audio {role}] {stack.label} ...", file=sys.stderr, flush=True)
            out[role].append(run_audio_cpu(server, stack, peer, role, a, logdir))
            print(f"[audio {role}] {stack.label} took {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
    names = [s.label for s in chosen]
    pairs = [(s, s) for s in chosen] if "latency" in a.audio_parts_list else []
    if pairs and a.audio_pairings == "all" and "ours" in names and "official" in names:
        pairs += [(stacks["ours"], stacks["official"]), (stacks["official"], stacks["ours"])]
    for tx, rx in pairs:
        t = time.monotonic()
        print(f"[audio latency] {tx.label} -> {rx.label} ...", file=sys.stderr, flush=True)
        out["latency"].append(run_audio_latency(server, tx, rx, a, logdir))
        print(f"[audio latency] {tx.label} -> {rx.label} took {time.monotonic() - t:.0f} s", file=sys.stderr,
              flush=True)
    return out


# ---- tables ----------------------------------------------------------------------------


def num(v: Optional[float], width: int, digits: int = 1) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.{digits}f}"


def yes(v: Optional[bool]) -> str:
    return "-" if v is None else ("yes" if v else "no")


def print_basic(rows: List[Dict[str, Any]]) -> None:
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


def print_hold(rows: List[Dict[str, Any]], a: argparse.Namespace) -> None:
    print()
    print(
        f"GIL hold: the receiver (stack under test) calls ctypes.PyDLL(None).sleep({a.hold_seconds}) on its "
        f"event-loop thread {a.hold_after:g} s after its first packet;"
    )
    print(
        f"the sender publishes a reliable 100-byte packet every {a.hold_interval * 1000:.0f} ms for "
        f"{a.hold_duration:g} s. Times are seconds from the start of the hold."
    )
    print(f"{'stack (receiver)':<18}{'sender':<18}{'sent':>6}{'recv':>6}{'lost':>6}{'in order':>9}{'dups':>6}"
          f"{'catch-up s':>11}  {'sender saw rx leave':<26}receiver events")
    for r in rows:
        if "error" in r:
            print(f"{r['label']:<18}failed: {r['error']}")
            continue
        tx, rx = r["tx"], r["rx"]
        origin = rx.get("hold_start_at")

        def at(t: float) -> str:
            return f"{t - origin:+.1f}" if origin is not None else f"{t:.1f}"

        left = ", ".join(f"{name} {at(t)}" for name, t in tx["rx_events"]) or "no"
        events = ", ".join(f"{name} {at(t)}" for name, t in rx["events"]) or "-"
        if origin is None:
            events = "no hold (no packet arrived); " + events
        elif not rx.get("connected"):
            events += " (disconnected at the end)"
        print(
            f"{r['label']:<18}{r['peer']:<18}{tx['sent']:>6}{rx['received']:>6}{tx['sent'] - rx['received']:>6}"
            f"{yes(rx['in_order']):>9}{rx['duplicates']:>6}{num(rx['catch_up_s'], 11, 2)}  {left:<26}{events}"
        )
    print(
        "catch-up: from the end of the hold to the first packet the receiver got less than 0.25 s after "
        "it was sent ('-': never);\nlost: sent minus received; receiver events: as its Python code saw them "
        "(after the hold, if they happened during it)."
    )


def print_burst(rows: List[Dict[str, Any]], a: argparse.Namespace) -> None:
    print()
    mb = a.burst * a.burst_size / 1e6
    print(
        f"Burst: the sender (stack under test) awaits {a.burst} concurrent publish_data({a.burst_size} B, "
        f"reliable=True) through asyncio.gather ({mb:.0f} MB),"
    )
    print(
        f"given at most {a.burst_timeout:g} s and {a.burst_rss_cap} MB of RSS growth over the sender's baseline "
        "after connecting and building the payloads"
    )
    print("(sampled every 50 ms; VmHWM as a check).")
    print(f"{'stack (sender)':<18}{'receiver':<18}{'returned':>9}{'received':>9}{'in order':>9}{'dups':>6}"
          f"{'peak RSS +MB':>13}{'HWM +MB':>9}{'after +MB':>10}{'publish s':>10}{'total s':>9}{'MB/s':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['label']:<18}failed: {r['error']}")
            continue
        tx = r["tx"]
        limit = f">{a.burst_timeout:g}"
        publish = num(tx["publish_s"], 10, 2) if tx["publish_s"] is not None else f"{limit:>10}"
        memory = f"{num(tx['peak_growth_mb'], 13)}{num(tx['hwm_growth_mb'], 9)}{num(tx['end_growth_mb'], 10)}"
        if "rx" not in r:  # the asyncio-only floor
            print(f"{r['label']:<18}{'-':<18}{tx['returned']:>9}{'-':>9}{'-':>9}{'-':>6}{memory}{publish}")
            continue
        rx = r["rx"]
        limit = f">{r['stop_at'] - r['t0']:.0f}"  # the window it got (shorter if capped)
        if tx["publish_s"] is None:
            publish = f"{limit:>10}"
        delivered = rx["last_at"] - r["t0"] if rx["last_at"] is not None else None
        if r["complete"] and tx["publish_s"] is not None and delivered is not None:
            total = f"{max(tx['publish_s'], delivered):>9.2f}"
        else:
            total = f"{limit:>9}"
        window = delivered if r["complete"] else r["stop_at"] - r["t0"]
        rate = rx["bytes"] / 1e6 / window if window else None
        print(
            f"{r['label']:<18}{r['peer']:<18}{tx['returned']:>9}{rx['received']:>9}{yes(rx['in_order']):>9}"
            f"{rx['duplicates']:>6}{memory}{publish}{total}{num(rate, 8, 2)}"
        )
        if tx.get("failed"):
            print(f"{'':<18}{tx['failed']} publish_data calls raised")
        if tx.get("capped_after_s") is not None:
            print(f"{'':<18}stopped {tx['capped_after_s']:.0f} s in: the sender's RSS grew past the "
                  f"{a.burst_rss_cap} MB cap (--burst-rss-cap)")
    print(
        "returned: publish_data calls that returned; after +MB: RSS growth at the end (tasks released once "
        "all returned);\npublish s: until all returned; total s: until all returned and arrived; "
        "MB/s: bytes received / time to the last arrival (or to the limit)."
    )


def audio_cpu_figures(r: Dict[str, Any], audio_s: float) -> Dict[int, Dict[str, float]]:
    """Per track count: CPU seconds per track per 60 s of audio and % of one core per
    track, over the idle baseline (its rate applied to each window's wall time)."""
    phases = r["phases"]
    idle = phases[0]
    idle_rate = idle["cpu_s"] / idle["wall_s"]
    out: Dict[int, Dict[str, float]] = {0: {"core_pct": idle_rate * 100}}
    for ph in phases[1:]:
        n = ph["tracks"]
        extra = ph["cpu_s"] - idle_rate * ph["wall_s"]
        audio = ph["frames"] / 100 / n  # seconds of audio per track in the window
        out[n] = {
            "cpu_s_per_60": extra / n * 60 / audio if audio else float("nan"),
            "core_pct": extra / n / ph["wall_s"] * 100,
            "audio_s": audio,
            "total_pct": ph["cpu_s"] / ph["wall_s"] * 100,
            "threads": ph["threads"],
        }
    return out


def ratio(ours: Optional[float], official: Optional[float], width: int) -> str:
    if ours is None or official is None or official <= 0 or ours != ours or official != official:
        return f"{'-':>{width}}"
    return f"{ours / official:>{width - 1}.2f}x"


def print_audio(res: Dict[str, Any], a: argparse.Namespace) -> None:
    counts = a.audio_counts
    for role, what in (("pub", "publishes"), ("sub", "subscribes to")):
        if not res[role]:
            continue
        print()
        peer = "listener" if role == "pub" else "publisher"
        print(f"Audio CPU: the stack under test {what} N 48 kHz mono tone tracks (AudioStream reads for subscribers); "
              f"{peer}: {res['peer']}, another process.")
        print(f"Whole process, user+sys, over {a.audio_seconds:g} s windows, minus the same process's idle rate "
              "(connected, no track); per track: CPU s per 60 s of audio, % of one core.")
        head = f"{'stack':<18}{'idle %':>8}"
        for n in counts:
            head += f"{f'N={n} s/60s':>13}{'%core':>7}{'proc %':>8}{'thr':>5}"
        print(head + "  audio check")
        figs: Dict[str, Dict[int, Dict[str, float]]] = {}
        for r in res[role]:
            if "error" in r:
                print(f"{r['label']:<18}failed: {r['error']}")
                continue
            f = figs[r["label"]] = audio_cpu_figures(r, a.audio_seconds)
            line = f"{r['label']:<18}{f[0]['core_pct']:>8.2f}"
            for n in counts:
                x = f.get(n)
                if x is None:
                    line += f"{'-':>13}{'-':>7}{'-':>8}{'-':>5}"
                else:
                    line += f"{x['cpu_s_per_60']:>13.2f}{x['core_pct']:>7.2f}{x['total_pct']:>8.2f}{x['threads']:>5}"
            print(line + "  " + audio_check(role, r, counts))
        if "ours" in figs and "official" in figs:
            o, g = figs["ours"], figs["official"]
            line = f"{'ours/official':<18}{ratio(o[0]['core_pct'], g[0]['core_pct'], 8)}"
            for n in counts:
                x, y = o.get(n, {}), g.get(n, {})
                line += f"{ratio(x.get('cpu_s_per_60'), y.get('cpu_s_per_60'), 13)}{ratio(x.get('core_pct'), y.get('core_pct'), 7)}"
                line += f"{ratio(x.get('total_pct'), y.get('total_pct'), 8)}{'':>5}"
            print(line)
        top = counts[-1]
        for r in res[role]:
            phase = next((ph for ph in r.get("phases", []) if ph["tracks"] == top), None)
            if phase is None or not phase.get("by_thread"):
                continue
            wall = phase["wall_s"]
            parts = [f"{name} {t / wall * 100:.1f}" for name, t in list(phase["by_thread"].items())[:5]]
            print(f"  {r['label']} with N={top}, % of one core by thread: {', '.join(parts)}")
    if res["pub"] or res["sub"]:
        print("idle %: the idle process's CPU as % of one core; proc %: the whole process with N tracks; thr: its "
              "threads;\nby thread: /proc/self/task (10 ms ticks), 'main' runs the asyncio loop.")
    if not res["latency"]:
        return

    print()
    print(f"Audio latency (mouth to ear through the server): {a.audio_clicks} clicks, one every "
          f"{a.audio_click_interval * 1000:.0f} ms (every other one 10 ms later; 10 ms of 1 kHz at full scale "
          "in silence),")
    print(f"fed like a microphone (a 10 ms frame every 10 ms) into an AudioSource with queue_size_ms="
          f"{a.audio_queue_ms}; from the call to capture_frame to the onset in the subscriber's AudioStream.")
    print(f"{'publisher -> subscriber':<28}{'clicks':>7}{'found':>7}{'ear p50':>9}{'p90':>7}{'min':>7}{'max':>7}"
          f"{'arrival p50':>13}{'p90':>7}{'capture':>9}{'queued':>8}")
    medians: Dict[str, float] = {}
    p90s: Dict[str, float] = {}
    for r in res["latency"]:
        if "error" in r:
            print(f"{r['label']:<28}failed: {r['error']}")
            continue
        lat = sorted(r["latencies_ms"])
        arr = sorted(r["arrival_latencies_ms"])
        if not lat:
            print(f"{r['label']:<28}{r['clicks']:>7}{0:>7}  no click arrived ({r['onsets']} onsets)")
            continue
        med, p90 = statistics.median(lat), lat[min(len(lat) - 1, int(0.9 * len(lat)))]
        medians[r["label"]], p90s[r["label"]] = med, p90
        print(f"{r['label']:<28}{r['clicks']:>7}{len(lat):>7}{med:>9.1f}{p90:>7.1f}{lat[0]:>7.1f}{lat[-1]:>7.1f}"
              f"{statistics.median(arr):>13.1f}{arr[min(len(arr) - 1, int(0.9 * len(arr)))]:>7.1f}"
              f"{num(r['capture_wait_ms_p50'], 9, 1)}{num(r['queued_ms_p50'], 8, 1)}")
    same = ("ours -> ours", "official -> official")
    if all(k in medians for k in same):
        print(f"{'ours/official':<28}{'':>14}{ratio(medians[same[0]], medians[same[1]], 9)}"
              f"{ratio(p90s[same[0]], p90s[same[1]], 7)}")
    print("In ms. found: clicks whose onset came before the next click; ear: when a player fed the frames as they "
          "come plays the onset\n(frames back to back in real time, silent ones skipped while behind); arrival: "
          "when the onset's frame left the AudioStream\niterator, plus the onset's offset in it; capture: median "
          "time capture_frame took for a click frame (waiting for room);\nqueued: median queued_duration of the "
          "source just before a click frame was handed over.")


def audio_check(role: str, r: Dict[str, Any], counts: List[int]) -> str:
    """Whether the audio really flowed: the tone seen by the listener (pub), or by the
    stack under test (sub), in the frames checked (every 100th)."""
    if role == "pub":
        tracks = r["peer_result"]["tracks"]
        loud = sum(t["loud"] for t in tracks)
        checked = sum(t["checked"] for t in tracks)
        fed = ", ".join(f"{p['frames'] / 100 / p['tracks']:.1f}" for p in r["phases"][1:])
        return f"listener: {len(tracks)} tracks, tone in {loud}/{checked} checked frames; s of audio fed per track: {fed}"
    phases = r["phases"][1:]
    loud = sum(p.get("loud", 0) for p in phases)
    checked = sum(p.get("checked", 0) for p in phases)
    frames = ", ".join(f"{p['frames'] / 100 / p['tracks']:.1f}" for p in phases)
    return f"tone in {loud}/{checked} checked frames; s of audio read per track: {frames}"


# ---- main ------------------------------------------------------------------------------


def env_default(name: str, default: str) -> str:
    return os.environ.get(name) or default


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(PARTS), help="parts to run, comma-separated: basic,hold,burst,rpc,audio")
    p.add_argument("--stacks", default=",".join(STACKS), help="stacks, comma-separated (default: all three)")
    p.add_argument("--hold-sender", choices=("official", "same"),
                   default=env_default("BENCH_HOLD_SENDER", "official"),
                   help="hold's sender: the official SDK or the stack under test (env BENCH_HOLD_SENDER)")
    p.add_argument("--burst-receiver", choices=("official", "same"),
                   default=env_default("BENCH_BURST_RECEIVER", "same"),
                   help="burst's receiver: the official SDK or the stack under test (env BENCH_BURST_RECEIVER)")
    p.add_argument("--no-build", action="store_true", help="use the installed package and built library")
    p.add_argument("--lib", help="liblivekit_ffi.so for official-on-ours (default: cargo build --release)")
    p.add_argument("--hold-seconds", type=int, default=25, help="GIL hold length (default 25)")
    p.add_argument("--hold-after", type=float, default=2.0, help="hold starts this long after the first packet")
    p.add_argument("--hold-duration", type=float, default=30.0, help="how long the sender sends (default 30)")
    p.add_argument("--hold-interval", type=float, default=0.05, help="seconds between packets (default 0.05)")
    p.add_argument("--burst", type=int, default=int(env_default("BENCH_BURST", "50000")),
                   help="publish_data calls in the burst (env BENCH_BURST; default 50000)")
    p.add_argument("--burst-size", type=int, default=1024, help="payload bytes (default 1024)")
    p.add_argument("--burst-rss-cap", type=int, default=int(env_default("BENCH_BURST_RSS_CAP", "4096")),
                   help="end a burst sender whose RSS grows by more MB than this (default 4096; 0: no cap)")
    p.add_argument("--burst-timeout", type=float, default=float(env_default("BENCH_BURST_TIMEOUT", "180")),
                   help="seconds each stack gets for the burst (env BENCH_BURST_TIMEOUT; default 180)")
    p.add_argument("--rpc-calls", type=int, default=300, help="sequential RPC calls (default 300)")
    p.add_argument("--stream-mb", type=float, default=20.0, help="size of each benchmark stream (default 20)")
    p.add_argument("--audio-seconds", type=float, default=float(env_default("BENCH_AUDIO_SECONDS", "60")),
                   help="audio CPU: length of each measured window, idle and per track count "
                   "(env BENCH_AUDIO_SECONDS; default 60)")
    p.add_argument("--audio-tracks", default="1,4", help="audio CPU: track counts, comma-separated (default 1,4)")
    p.add_argument("--audio-peer", choices=("official", "ours"), default="official",
                   help="audio CPU: the stack at the other end (listener / publisher; default official)")
    p.add_argument("--audio-clicks", type=int, default=40, help="audio latency: clicks per pairing (default 40)")
    p.add_argument("--audio-click-interval", type=float, default=0.5, help="seconds between clicks (default 0.5)")
    p.add_argument("--audio-queue-ms", type=int, default=50,
                   help="audio latency: the publisher's AudioSource queue_size_ms (default 50)")
    p.add_argument("--audio-parts", default="pub,sub,latency",
                   help="audio parts, comma-separated: pub,sub,latency (default all three)")
    p.add_argument("--audio-pairings", choices=("all", "same"), default="all",
                   help="audio latency: every publisher/subscriber pairing of ours and official, or "
                   "each stack with itself (default all)")
    a = p.parse_args(argv)
    a.parts = [x for x in a.only.split(",") if x]
    a.stack_names = [x for x in a.stacks.split(",") if x]
    for x in a.parts:
        if x not in PARTS:
            p.error(f"unknown part {x!r} (choose from {', '.join(PARTS)})")
    for x in a.stack_names:
        if x not in STACKS:
            p.error(f"unknown stack {x!r} (choose from {', '.join(STACKS)})")
    if a.burst_size < 4:
        p.error("--burst-size must be at least 4")
    try:
        a.audio_counts = sorted({int(x) for x in a.audio_tracks.split(",") if x})
    except ValueError:
        p.error("--audio-tracks: comma-separated track counts")
    if not a.audio_counts or a.audio_counts[0] < 1:
        p.error("--audio-tracks: counts of at least 1")
    a.audio_parts_list = [x for x in a.audio_parts.split(",") if x]
    if not set(a.audio_parts_list) <= {"pub", "sub", "latency"}:
        p.error("--audio-parts: pub, sub, latency")
    return a


def prepare(a: argparse.Namespace, rundir: Path) -> Dict[str, Stack]:
    base = {k: v for k, v in os.environ.items() if k != "LIVEKIT_LIB_PATH"}
    official = sh("bash", str(ROOT / "scripts" / "official-sdk.sh"))
    stacks = {"official": Stack("official", official, dict(base))}
    if "ours" in a.stack_names or ("audio" in a.parts and a.audio_peer == "ours"):
        script = "dev-venv.sh" if a.no_build else "python-env.sh"
        stacks["ours"] = Stack("ours", sh("bash", str(ROOT / "scripts" / script)), dict(base))
    if "official-on-ours" in a.stack_names:
        target = os.environ.get("CARGO_TARGET_DIR") or str(Path.home() / ".cache/livekit-rtc/target")
        if not a.no_build and not a.lib:
            cargo_env = dict(os.environ, CARGO_TARGET_DIR=target)
            cargo_env["PATH"] = f"{Path.home() / '.cargo' / 'bin'}{os.pathsep}{cargo_env.get('PATH', '')}"
            subprocess.run(["cargo", "build", "--release", "-q", "-p", "livekit-ffi"], check=True, cwd=ROOT,
                           env=cargo_env)
        # A private copy: a rebuild by someone else during the run does not change it.
        built = Path(a.lib) if a.lib else Path(target) / "release" / "liblivekit_ffi.so"
        if not built.exists():
            raise SystemExit(f"{built} is missing: run without --no-build, or cargo build --release -p livekit-ffi")
        lib = rundir / "liblivekit_ffi.so"
        shutil.copy2(built, lib)
        stacks["official-on-ours"] = Stack("official-on-ours", official, dict(base, LIVEKIT_LIB_PATH=str(lib)))
    return stacks


def main(argv: List[str]) -> int:
    a = parse_args(argv)
    rundir = Path(tempfile.mkdtemp(prefix="lk-bench-"))
    ok = True
    try:
        stacks = prepare(a, rundir)
        chosen = [stacks[n] for n in STACKS if n in a.stack_names]
        basic: List[Dict[str, Any]] = []
        hold: List[Dict[str, Any]] = []
        burst: List[Dict[str, Any]] = []
        rpc: List[Dict[str, Any]] = []
        audio: Dict[str, Any] = {}
        with LiveKitServer() as server:
            for part in PARTS:
                if part not in a.parts:
                    continue
                if part == "audio":
                    audio = run_audio(server, chosen, stacks, a, rundir)
                    ok = ok and not any("error" in r for k in ("pub", "sub", "latency") for r in audio[k])
                    continue
                if part == "burst":
                    burst.append(run_floor(stacks["official"], a, rundir))
                for stack in chosen:
                    choice = a.hold_sender if part == "hold" else a.burst_receiver
                    peer = stack if choice == "same" else stacks["official"]
                    t = time.monotonic()
                    print(f"[{part}] {stack.label} ...", file=sys.stderr, flush=True)
                    if part == "basic":
                        row = run_basic(server, stack)
                        if row is None:
                            ok = False
                        else:
                            basic.append(row)
                    elif part == "rpc":
                        rpc.append(run_rpc(server, stack, a))
                        ok = ok and "error" not in rpc[-1]
                    elif part == "hold":
                        hold.append(run_hold(server, stack, peer, a, rundir))
                        ok = ok and "error" not in hold[-1]
                    else:
                        burst.append(run_burst(server, stack, peer, a, rundir))
                        ok = ok and "error" not in burst[-1]
                    print(f"[{part}] {stack.label} took {time.monotonic() - t:.0f} s", file=sys.stderr, flush=True)
        if "basic" in a.parts:
            print_basic(basic)
        if "hold" in a.parts:
            print_hold(hold, a)
        if "burst" in a.parts:
            print_burst(burst, a)
        if "rpc" in a.parts:
            print_rpc(rpc, a)
        if "audio" in a.parts:
            print_audio(audio, a)
        if os.environ.get("BENCH_JSON"):
            figures = {"basic": basic, "hold": hold, "burst": burst, "rpc": rpc, "audio": audio}
            Path(os.environ["BENCH_JSON"]).write_text(json.dumps(figures, indent=1))
    finally:
        if ok:
            shutil.rmtree(rundir, ignore_errors=True)
        else:
            print(f"worker logs kept in {rundir}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
