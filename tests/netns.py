"""A network of the test's own, in Linux network namespaces, for fault tests against
a real LiveKit server.

    with TestNetwork(clients=("a", "b")) as net:
        url = net.url                           # the server, in namespace <name>-srv
        peer = await net.start_json("a", argv)  # a program in namespace <name>-a
        with net.loss("a", 0.3):                # 30% of a's UDP lost, both ways
            ...

Layout: namespace `lkt-<random>-srv` holds a bridge with the server's address
`10.199.X.1/24` (X drawn among the /24s the host routes nowhere); each client's
namespace `lkt-<random>-<who>` holds one end of a veth pair, `eth0` with
`10.199.X.N`, whose other end is a port of that bridge. The server runs in its
namespace bound to its address, with `node_ip` set to it, so the only ICE candidates
on either side are on the subnet.

A fault is iptables DROP rules that nobody notices at once, as on a real network:
packets from a client are dropped where they arrive in the server's namespace
(INPUT, matched by the client's address), packets to it where they arrive in its
own (INPUT). Nothing is dropped in OUTPUT: there the sender's `sendto` would fail at
once with EPERM instead of its packet vanishing.

Everything goes when the network closes (the `with` block, or at exit): the
processes started in its namespaces, then the namespaces with their links and
rules. A run that died without cleaning up is swept by the next one: each network
leaves a note with its owner's pid in /run/lkt-netns.

Needs root, `ip` (iproute2) and `iptables`; missing tools are installed with apt-get.
Run as a script, it builds a network and keeps it until Enter is pressed.
"""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lkserver import API_KEY, API_SECRET, server_binary  # noqa: E402

NOTES = Path("/run/lkt-netns")
SIGNAL_PORT = 7880
RTC_TCP_PORT = 7881
RTC_UDP_PORT = 7882

_open: List["TestNetwork"] = []


def _run(*argv: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
    out = subprocess.run(list(argv), capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def ensure_prerequisites() -> None:
    """Root, `ip` and `iptables`; missing tools are installed with apt-get."""
    if os.geteuid() != 0:
        raise RuntimeError("the network namespace tests need root (ip netns, iptables)")
    tools = {"ip": "iproute2", "iptables": "iptables"}
    missing = [pkg for tool, pkg in tools.items() if not shutil.which(tool)]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        print(f"netns: installing {' '.join(missing)}", file=sys.stderr)
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env)
    for tool in tools:
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} is missing and could not be installed")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _namespaces() -> List[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _remove_namespace(ns: str) -> None:
    """Ends what runs in namespace `ns` (all of it started by the network that made
    it) and deletes the namespace."""
    for _ in range(50):
        pids = [int(p) for p in _run("ip", "netns", "pids", ns, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.05)
    _run("ip", "netns", "del", ns, check=False)


def sweep_stale() -> None:
    """Removes the namespaces of networks whose owner is gone."""
    if not NOTES.is_dir():
        return
    present = _namespaces()
    for note in NOTES.iterdir():
        try:
            owner = int(note.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            owner = 0
        if owner and _pid_alive(owner):
            continue
        for ns in present:
            if ns.startswith(note.name + "-"):
                _remove_namespace(ns)
        note.unlink(missing_ok=True)


def _free_subnet() -> str:
    """`10.199.X` of a /24 the host routes nowhere. The namespaces are apart from the
    host anyway; this only keeps addresses unambiguous to whoever reads the logs."""
    used = []
    routes = _run("ip", "-4", "route", "show", "table", "all", check=False).stdout
    for line in routes.splitlines():
        words = line.split()
        if words and words[0] in ("local", "broadcast", "unreachable", "prohibit", "blackhole"):
            words = words[1:]
        try:
            net = ipaddress.ip_network(words[0], strict=False) if words else None
        except ValueError:
            continue
        if net is not None and net.prefixlen > 0:
            used.append(net)
    for x in random.sample(range(256), 256):
        net = ipaddress.ip_network(f"10.199.{x}.0/24")
        if not any(net.overlaps(u) for u in used):
            return f"10.199.{x}"
    raise RuntimeError("no free /24 in 10.199.0.0/16")


class Fault:
    """The iptables rules of one fault: added by `add()` (or entering a `with`),
    removed by `remove()` (or leaving it)."""

    def __init__(self, net: "TestNetwork", rules: Sequence[Tuple[str, List[str]]]) -> None:
        self.net = net
        self.rules = list(rules)
        self.active = False

    def add(self) -> "Fault":
        if not self.active:
            for ns, spec in self.rules:
                self.net.iptables(ns, "-I", "INPUT", *spec)
            self.active = True
        return self

    def remove(self) -> None:
        if self.active:
            for ns, spec in self.rules:
                self.net.iptables(ns, "-D", "INPUT", *spec)
            self.active = False

    def __enter__(self) -> "Fault":
        return self.add()

    def __exit__(self, *exc: object) -> None:
        self.remove()


class JsonProcess:
    """A program in a namespace, driven by JSON commands on its stdin ({"cmd": ...})
    and reporting JSON events on its stdout ({"ev": ...}); its stderr goes to `log`."""

    def __init__(self, name: str, proc: "asyncio.subprocess.Process", log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.events: List[Dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                self.events.append(json.loads(line))
            except ValueError:
                print(f"{self.name}: {line.decode(errors='replace').rstrip()}", file=sys.stderr)

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(command) + "\n").encode())

    def of(self, ev: str) -> List[Dict[str, Any]]:
        return [e for e in self.events if e.get("ev") == ev]

    def _find(
        self, ev: str, pred: Callable[[Dict[str, Any]], bool], after: int
    ) -> Optional[Dict[str, Any]]:
        for e in self.events[after:]:
            if e.get("ev") == ev and pred(e):
                return e
        return None

    async def wait(
        self,
        ev: str,
        pred: Callable[[Dict[str, Any]], bool] = lambda e: True,
        timeout: float = 30.0,
        after: int = 0,
    ) -> Dict[str, Any]:
        """The first event `ev` (from index `after` on) that satisfies `pred`."""
        deadline = time.monotonic() + timeout
        while (found := self._find(ev, pred, after)) is None:
            if self._reader.done():
                raise AssertionError(
                    f"{self.name} ended (status {self.proc.returncode}) without {ev!r};"
                    f" events: {self.tail()}; log: {self.log}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name}: no {ev!r} within {timeout} s;"
                    f" events: {self.tail()}; log: {self.log}"
                )
            await asyncio.sleep(0.02)
        return found

    async def ask(
        self, cmd: str, ev: Optional[str] = None, timeout: float = 30.0, **fields: Any
    ) -> Dict[str, Any]:
        """Sends command `cmd` and waits for the event that answers it (`ev`, named
        as the command by default)."""
        mark = len(self.events)
        self.send(cmd=cmd, **fields)
        return await self.wait(ev or cmd, timeout=timeout, after=mark)

    def tail(self, n: int = 12) -> str:
        return json.dumps(self.events[-n:])[-3000:]

    async def stop(self, timeout: float = 10.0) -> Optional[int]:
        """Closes its stdin (the program leaves) and waits for it; kills it if it
        does not end within `timeout`."""
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
            except (OSError, RuntimeError):
                pass
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        await asyncio.gather(self._reader, return_exceptions=True)
        return self.proc.returncode


class TestNetwork:
    """The namespaces, links and server of one test; a context manager."""

    __test__ = False  # not a test class, whatever its name

    def __init__(self, clients: Iterable[str] = ("a", "b"), server_yaml: str = "") -> None:
        self.name = f"lkt-{secrets.token_hex(3)}"
        self.clients = list(clients)
        self.server_yaml = server_yaml
        self.subnet = ""
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.server: Optional["subprocess.Popen[bytes]"] = None
        self.made: List[str] = []
        self.procs: List[JsonProcess] = []

    # ---- names and addresses --------------------------------------------------------

    def ns(self, who: str) -> str:
        return f"{self.name}-{who}"

    def addr(self, who: str) -> str:
        if who == "srv":
            return f"{self.subnet}.1"
        return f"{self.subnet}.{2 + self.clients.index(who)}"

    @property
    def url(self) -> str:
        return f"ws://{self.addr('srv')}:{SIGNAL_PORT}"

    def token(self, identity: str, room: str) -> str:
        from livekit import api

        grants = api.VideoGrants(room_join=True, room=room)
        token = api.AccessToken(API_KEY, API_SECRET).with_identity(identity)
        return token.with_grants(grants).to_jwt()

    # ---- building it ----------------------------------------------------------------

    def start(self) -> "TestNetwork":
        ensure_prerequisites()
        sweep_stale()
        NOTES.mkdir(parents=True, exist_ok=True)
        (NOTES / self.name).write_text(f"{os.getpid()}\n")
        _open.append(self)
        try:
            self._build()
            self._start_server()
        except BaseException:
            self.close(keep_logs=True)
            raise
        return self

    def _ip(self, who: str, *args: str) -> None:
        _run("ip", "-n", self.ns(who), *args)

    def _build(self) -> None:
        self.subnet = _free_subnet()
        for who in ["srv", *self.clients]:
            _run("ip", "netns", "add", self.ns(who))
            self.made.append(self.ns(who))
            self._ip(who, "link", "set", "lo", "up")
        self._ip("srv", "link", "add", "lkbr", "type", "bridge")
        self._ip("srv", "addr", "add", f"{self.addr('srv')}/24", "dev", "lkbr")
        self._ip("srv", "link", "set", "lkbr", "up")
        for who in self.clients:
            # Made right in the namespaces: no name can clash with the host's.
            veth = ["ip", "link", "add", "eth0", "netns", self.ns(who), "type", "veth"]
            _run(*veth, "peer", "name", f"v-{who}", "netns", self.ns("srv"))
            self._ip(who, "addr", "add", f"{self.addr(who)}/24", "dev", "eth0")
            self._ip(who, "link", "set", "eth0", "up")
            self._ip("srv", "link", "set", f"v-{who}", "master", "lkbr")
            self._ip("srv", "link", "set", f"v-{who}", "up")

    def _start_server(self) -> None:
        srv = self.addr("srv")
        cfg = self.dir / "livekit.yaml"
        cfg.write_text(
            f"port: {SIGNAL_PORT}\n"
            f"bind_addresses: [{srv}]\n"
            f"keys: {{{API_KEY}: {API_SECRET}}}\n"
            f"rtc: {{tcp_port: {RTC_TCP_PORT}, udp_port: {RTC_UDP_PORT},"
            f" use_external_ip: false, node_ip: {srv}}}\n"
            "turn: {enabled: false}\n"
            "room: {auto_create: true}\n"
            "logging: {level: info}\n" + self.server_yaml
        )
        binary = server_binary()
        with open(self.dir / "server.log", "wb") as log:
            self.server = subprocess.Popen(
                ["ip", "netns", "exec", self.ns("srv"), binary, "--config", str(cfg)],
                stdout=log,
                stderr=log,
            )
        # The server answers only inside its namespace: ask from there.
        probe = (
            "import sys, time, urllib.request\n"
            "deadline = time.monotonic() + 20\n"
            "while time.monotonic() < deadline:\n"
            "    try:\n"
            f"        urllib.request.urlopen('http://{srv}:{SIGNAL_PORT}/', timeout=1)\n"
            "        sys.exit(0)\n"
            "    except OSError:\n"
            "        time.sleep(0.05)\n"
            "sys.exit(1)\n"
        )
        ready = subprocess.run(["ip", "netns", "exec", self.ns("srv"), sys.executable, "-c", probe])
        if ready.returncode != 0 or self.server.poll() is not None:
            log_path = self.dir / "server.log"
            raise RuntimeError(f"the LiveKit server did not start in {self.ns('srv')}; see {log_path}")

    # ---- running programs -----------------------------------------------------------

    async def start_json(self, who: str, argv: Sequence[str], name: str = "") -> JsonProcess:
        """Starts `argv` in `who`'s namespace as a JSON-lines program."""
        name = name or who
        log = self.dir / f"{name}.log"
        with open(log, "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.ns(who), *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=16 * 1024 * 1024,
            )  # fmt: skip
        p = JsonProcess(name, proc, log)
        self.procs.append(p)
        return p

    def run_in(self, who: str, *argv: str) -> str:
        """Runs a command in `who`'s namespace; its stdout."""
        return _run("ip", "netns", "exec", self.ns(who), *argv).stdout

    # ---- faults ---------------------------------------------------------------------

    def iptables(self, ns: str, *args: str) -> None:
        _run("ip", "netns", "exec", ns, "iptables", "-w", *args)

    def fault(
        self, who: str, up: Sequence[str] = (), down: Optional[Sequence[str]] = None
    ) -> Fault:
        """A fault on `who`'s link: its packets to the server that match `up`, and
        the server's packets to it that match `down` (by default `up`), are dropped
        from `add()` (or the start of a `with` block) on."""
        down = list(up) if down is None else list(down)
        return Fault(
            self,
            [
                (self.ns("srv"), ["-s", self.addr(who), *up, "-j", "DROP"]),
                (self.ns(who), ["-s", self.addr("srv"), *down, "-j", "DROP"]),
            ],
        )

    def loss(self, who: str, probability: float, protocol: str = "udp") -> Fault:
        """Random loss of `probability` of `who`'s `protocol` packets ("all": every
        packet), each way."""
        odds = f"{probability:.3f}"
        random_drop = ["-m", "statistic", "--mode", "random", "--probability", odds]
        return self.fault(who, ["-p", protocol, *random_drop])

    def cut(self, who: str) -> Fault:
        """Nothing passes between `who` and the server."""
        return self.fault(who)

    def stall_tcp(self, who: str, client_port: int, server_port: int = SIGNAL_PORT) -> Fault:
        """One TCP connection of `who` goes silent: its segments are dropped both ways
        (no RST, no FIN gets through); new connections still do."""
        up = ["-p", "tcp", "--sport", str(client_port), "--dport", str(server_port)]
        down = ["-p", "tcp", "--sport", str(server_port), "--dport", str(client_port)]
        return self.fault(who, up, down)

    def tcp_ports(self, who: str, server_port: int = SIGNAL_PORT) -> List[int]:
        """Local ports of `who`'s established TCP connections to `server_port`."""
        dst = f"{self.addr('srv')}:{server_port}"
        out = self.run_in(who, "ss", "-tnH", "state", "established", "dst", dst)
        ports = []
        for line in out.splitlines():
            local = [f for f in line.split() if f.startswith(self.addr(who) + ":")]
            if local:
                ports.append(int(local[0].rsplit(":", 1)[1]))
        return ports

    # ---- teardown -------------------------------------------------------------------

    def close(self, keep_logs: bool = False) -> None:
        """Removes everything; its logs too unless `keep_logs`."""
        for p in self.procs:
            if p.proc.returncode is None:
                try:
                    p.proc.kill()
                except ProcessLookupError:
                    pass
        if self.server is not None and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        for ns in reversed(self.made):
            _remove_namespace(ns)
        self.made.clear()
        (NOTES / self.name).unlink(missing_ok=True)
        if not keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self in _open:
            _open.remove(self)

    def __enter__(self) -> "TestNetwork":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@atexit.register
def _close_all() -> None:
    for net in list(_open):
        net.close(keep_logs=True)


def main() -> int:
    with TestNetwork() as net:
        print(json.dumps({"name": net.name, "url": net.url, "logs": str(net.dir)}), flush=True)
        try:
            input()
        except EOFError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
