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

Relays (the tests of TURN): `TestNetwork(turn=True)` enables the server's embedded
TURN (UDP on 3478, TLS on 443 for the domain `turn.lkt.test`, relays on ports
30000-30100 of the server's address); `coturn=True` starts a coturn TURN server
beside it in the server's namespace (UDP and TCP on 3479, TLS on 5350, relays on
31000-31100, static long-term credentials `lkt:secret` in realm `lkt.test`; see
`coturn_url()` and `coturn_ice_server()`). Either one makes a test CA and a
certificate for `turn.lkt.test` (and the server's address) in the network's
directory: a client trusts it through `SSL_CERT_FILE=net.ca_file` (`client_env()`),
and finds the domain through `/etc/netns/<namespace>/hosts`, which `ip netns exec`
mounts over /etc/hosts. `block_server_ports(who, "7882/udp", "7881/tcp", ...)` (or
`block_direct_rtc(who)`) keeps a client off some of the server's ports, so that only
a relay can carry its media.

    with TestNetwork(turn=True) as net:
        with net.block_direct_rtc("a"), net.block_server_ports("a", "443/tcp"):
            ...                                  # only TURN over UDP is left to a

Everything goes when the network closes (the `with` block, or at exit): the
processes started in its namespaces, then the namespaces with their links and
rules, and the hosts files of the namespaces. A run that died without cleaning up is
swept by the next one: each network leaves a note with its owner's pid in
/run/lkt-netns.

Needs root, `ip` (iproute2) and `iptables`, and for relays `openssl` and coturn's
`turnserver`; missing tools are installed with apt-get.
Run as a script (`netns.py [--turn] [--coturn]`), it builds a network and keeps it
until Enter is pressed.
"""

from __future__ import annotations

import asyncio
import atexit
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lkserver import API_KEY, API_SECRET, server_binary  # noqa: E402

NOTES = Path("/run/lkt-netns")
ETC_NETNS = Path("/etc/netns")  # `ip netns exec NS` mounts /etc/netns/NS/* over /etc/*
SIGNAL_PORT = 7880
RTC_TCP_PORT = 7881
RTC_UDP_PORT = 7882
# The server's ports a client reaches directly, without a relay (ICE-TCP, ICE-UDP).
DIRECT_RTC = (f"{RTC_TCP_PORT}/tcp", f"{RTC_UDP_PORT}/udp")

# The LiveKit server's embedded TURN (`TestNetwork(turn=True)`). The server hands out
# `turn:<node_ip>:3478?transport=udp` and `turns:<domain>:443?transport=tcp`: 443 is
# written in the server, so the TLS listener must be there.
TURN_DOMAIN = "turn.lkt.test"
TURN_UDP_PORT = 3478
TURN_TLS_PORT = 443
TURN_RELAY_PORTS = (30000, 30100)

# coturn beside it (`TestNetwork(coturn=True)`), on ports of its own.
COTURN_PORT = 3479  # UDP and TCP
COTURN_TLS_PORT = 5350
COTURN_RELAY_PORTS = (31000, 31100)
COTURN_USER = "lkt"
COTURN_PASSWORD = "secret"
COTURN_REALM = "lkt.test"

_open: List["TestNetwork"] = []


def _run(*argv: str, check: bool = True) -> "subprocess.CompletedProcess[str]":
    out = subprocess.run(list(argv), capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def ensure_prerequisites(extra: Optional[Dict[str, str]] = None) -> None:
    """Root, `ip` and `iptables`, and the `extra` tools ({tool: Debian package});
    missing tools are installed with apt-get."""
    if os.geteuid() != 0:
        raise RuntimeError("the network namespace tests need root (ip netns, iptables)")
    tools = {"ip": "iproute2", "iptables": "iptables", **(extra or {})}
    missing = sorted({pkg for tool, pkg in tools.items() if not shutil.which(tool)})
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
    shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)


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
        if ETC_NETNS.is_dir():
            for etc in ETC_NETNS.glob(note.name + "-*"):
                shutil.rmtree(etc, ignore_errors=True)
            try:
                ETC_NETNS.rmdir()  # unless something else is there
            except OSError:
                pass
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

    def __init__(
        self,
        clients: Iterable[str] = ("a", "b"),
        server_yaml: str = "",
        turn: bool = False,
        coturn: bool = False,
        ipv6: bool = False,
    ) -> None:
        """`server_yaml` is added to the server's configuration (a `turn:` key of its
        own replaces ours, unless `turn`); `turn` enables the server's embedded TURN,
        `coturn` starts a coturn TURN server beside it; `ipv6` gives every namespace
        an IPv6 address too (`addr6`), on the same link. Faults (iptables) touch
        IPv4 only."""
        self.name = f"lkt-{secrets.token_hex(3)}"
        self.clients = list(clients)
        self.server_yaml = server_yaml
        self.turn = turn
        self.coturn = coturn
        self.ipv6 = ipv6
        if turn and re.search(r"^turn\s*:", server_yaml, re.MULTILINE):
            raise ValueError("turn=True writes the server's `turn:` key: not in server_yaml too")
        self.subnet = ""
        self.dir = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        self.server: Optional["subprocess.Popen[bytes]"] = None
        self.coturn_proc: Optional["subprocess.Popen[bytes]"] = None
        self.made: List[str] = []
        self.procs: List[JsonProcess] = []
        # The test CA's certificate (PEM), made with the network when it has a relay:
        # a client trusts it with SSL_CERT_FILE (see `client_env()`).
        self.ca_file = ""
        self.cert_file = ""
        self.key_file = ""
        self.turn_domain = TURN_DOMAIN

    # ---- names and addresses --------------------------------------------------------

    def ns(self, who: str) -> str:
        return f"{self.name}-{who}"

    def addr(self, who: str) -> str:
        if who == "srv":
            return f"{self.subnet}.1"
        return f"{self.subnet}.{2 + self.clients.index(who)}"

    def addr6(self, who: str) -> str:
        """`who`'s IPv6 address (a unique local one, of the network's own /64)."""
        third = self.subnet.rsplit(".", 1)[-1]
        host = 1 if who == "srv" else 2 + self.clients.index(who)
        return f"fd99:{int(third):x}::{host:x}"

    @property
    def url(self) -> str:
        return f"ws://{self.addr('srv')}:{SIGNAL_PORT}"

    def token(self, identity: str, room: str) -> str:
        from livekit import api

        grants = api.VideoGrants(room_join=True, room=room)
        token = api.AccessToken(API_KEY, API_SECRET).with_identity(identity)
        return token.with_grants(grants).to_jwt()

    @property
    def relays(self) -> bool:
        """Whether the network has a TURN server (and so a test CA and hosts files)."""
        return self.turn or self.coturn

    def coturn_url(self, transport: str) -> str:
        """The coturn URL of `transport`: "udp", "tcp" or "tls" (TURN over TLS,
        by the domain name)."""
        if transport == "udp":
            return f"turn:{self.addr('srv')}:{COTURN_PORT}?transport=udp"
        if transport == "tcp":
            return f"turn:{self.addr('srv')}:{COTURN_PORT}?transport=tcp"
        if transport == "tls":
            return f"turns:{TURN_DOMAIN}:{COTURN_TLS_PORT}?transport=tcp"
        raise ValueError(f"transport {transport!r}: udp, tcp or tls")

    def coturn_ice_server(self, *transports: str) -> str:
        """coturn as peer.py's `--ice-server` takes it: `URL[,URL...]|USER|PASSWORD`,
        with the URLs of `transports` (all three by default)."""
        urls = ",".join(self.coturn_url(t) for t in transports or ("udp", "tcp", "tls"))
        return f"{urls}|{COTURN_USER}|{COTURN_PASSWORD}"

    def client_env(self) -> Dict[str, str]:
        """The environment a client needs besides its own: SSL_CERT_FILE naming the
        test CA (when the network has one)."""
        return {"SSL_CERT_FILE": self.ca_file} if self.ca_file else {}

    # ---- building it ----------------------------------------------------------------

    def start(self) -> "TestNetwork":
        tools: Dict[str, str] = {}
        if self.relays:
            tools["openssl"] = "openssl"
        if self.coturn:
            tools["turnserver"] = "coturn"
        ensure_prerequisites(tools)
        sweep_stale()
        NOTES.mkdir(parents=True, exist_ok=True)
        (NOTES / self.name).write_text(f"{os.getpid()}\n")
        _open.append(self)
        try:
            self._build()
            if self.relays:
                self._make_certificates()
                self._write_hosts()
            self._start_server()
            if self.coturn:
                self._start_coturn()
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
        if self.ipv6:
            # nodad: usable at once, not after seconds of duplicate detection.
            self._ip("srv", "addr", "add", f"{self.addr6('srv')}/64", "dev", "lkbr", "nodad")
        self._ip("srv", "link", "set", "lkbr", "up")
        for who in self.clients:
            # Made right in the namespaces: no name can clash with the host's.
            veth = ["ip", "link", "add", "eth0", "netns", self.ns(who), "type", "veth"]
            _run(*veth, "peer", "name", f"v-{who}", "netns", self.ns("srv"))
            self._ip(who, "addr", "add", f"{self.addr(who)}/24", "dev", "eth0")
            if self.ipv6:
                self._ip(who, "addr", "add", f"{self.addr6(who)}/64", "dev", "eth0", "nodad")
            self._ip(who, "link", "set", "eth0", "up")
            self._ip("srv", "link", "set", f"v-{who}", "master", "lkbr")
            self._ip("srv", "link", "set", f"v-{who}", "up")

    def _make_certificates(self) -> None:
        """A test CA and a certificate it signed for TURN_DOMAIN and the server's
        address (ECDSA P-256, valid two days), in the network's directory."""
        d = self.dir
        ca_key, ca = d / "ca.key", d / "ca.pem"
        key, csr, cert = d / "tls.key", d / "tls.csr", d / "tls.pem"
        # Configurations of our own: nothing comes from the system's openssl.cnf.
        ca_cnf = d / "ca.cnf"
        ca_cnf.write_text(
            "[req]\nprompt = no\ndistinguished_name = dn\nx509_extensions = ext\n"
            f"[dn]\nCN = LiveKit test CA {self.name}\n"
            "[ext]\nbasicConstraints = critical, CA:TRUE\n"
            "keyUsage = critical, keyCertSign, cRLSign\nsubjectKeyIdentifier = hash\n"
        )
        leaf_cnf = d / "tls.cnf"
        leaf_cnf.write_text(
            f"[req]\nprompt = no\ndistinguished_name = dn\n[dn]\nCN = {TURN_DOMAIN}\n"
        )
        leaf_ext = d / "tls.ext"
        leaf_ext.write_text(
            "basicConstraints = critical, CA:FALSE\n"
            "keyUsage = critical, digitalSignature\n"
            "extendedKeyUsage = serverAuth\n"
            f"subjectAltName = DNS:{TURN_DOMAIN}, IP:{self.addr('srv')}\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n"
        )
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        _run("openssl", "req", "-x509", *ec, "-config", str(ca_cnf), "-days", "2",
             "-keyout", str(ca_key), "-out", str(ca))  # fmt: skip
        _run("openssl", "req", "-new", *ec, "-config", str(leaf_cnf),
             "-keyout", str(key), "-out", str(csr))  # fmt: skip
        _run("openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-set_serial", str(secrets.randbits(63)), "-days", "2", "-extfile", str(leaf_ext),
             "-out", str(cert))  # fmt: skip
        self.ca_file, self.cert_file, self.key_file = str(ca), str(cert), str(key)

    def _write_hosts(self) -> None:
        """TURN_DOMAIN is the server's address in every namespace of the network:
        `ip netns exec` mounts /etc/netns/<ns>/hosts over /etc/hosts."""
        try:
            hosts = Path("/etc/hosts").read_text()
        except OSError:
            hosts = "127.0.0.1 localhost\n"
        if hosts and not hosts.endswith("\n"):
            hosts += "\n"
        hosts += f"{self.addr('srv')} {TURN_DOMAIN}\n"
        for who in ["srv", *self.clients]:
            etc = ETC_NETNS / self.ns(who)
            etc.mkdir(parents=True, exist_ok=True)
            (etc / "hosts").write_text(hosts)

    def _turn_yaml(self) -> str:
        """The server's `turn:` key (JSON, which YAML reads as it is)."""
        if re.search(r"^turn\s*:", self.server_yaml, re.MULTILINE):
            return ""  # the caller's own
        if not self.turn:
            return "turn: {enabled: false}\n"
        turn = {
            "enabled": True,
            "domain": TURN_DOMAIN,
            "cert_file": self.cert_file,
            "key_file": self.key_file,
            "tls_port": TURN_TLS_PORT,
            "udp_port": TURN_UDP_PORT,
            "relay_range_start": TURN_RELAY_PORTS[0],
            "relay_range_end": TURN_RELAY_PORTS[1],
            "bind_addresses": [self.addr("srv")],
            # The relays' peer is the server itself, at a private address, which
            # the server's TURN refuses unless it is allowed here.
            "allow_restricted_peer_cidrs": [f"{self.subnet}.0/24"],
        }
        return f"turn: {json.dumps(turn)}\n"

    def _start_server(self) -> None:
        srv = self.addr("srv")
        cfg = self.dir / "livekit.yaml"
        cfg.write_text(
            f"port: {SIGNAL_PORT}\n"
            f"bind_addresses: [{srv}]\n"
            f"keys: {{{API_KEY}: {API_SECRET}}}\n"
            f"rtc: {{tcp_port: {RTC_TCP_PORT}, udp_port: {RTC_UDP_PORT},"
            f" use_external_ip: false, node_ip: {srv}}}\n"
            + self._turn_yaml()
            + "room: {auto_create: true}\n"
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
        if self.turn:
            tcp, udp = [TURN_TLS_PORT], [TURN_UDP_PORT]
            self._wait_listening(self.server, "the LiveKit server's TURN", "server.log", tcp, udp)

    def _wait_listening(
        self,
        proc: "subprocess.Popen[bytes]",
        what: str,
        log: str,
        tcp: Sequence[int],
        udp: Sequence[int],
        timeout: float = 10.0,
    ) -> None:
        """Waits until `proc` listens on the server's address at ports `tcp` and `udp`."""
        srv = self.addr("srv")
        want = {("tcp", p) for p in tcp} | {("udp", p) for p in udp}
        deadline = time.monotonic() + timeout
        while True:
            have = set()
            for line in self.run_in("srv", "ss", "-Hlntu").splitlines():
                words = line.split()
                if len(words) >= 5 and words[4].rsplit(":", 1)[0] in (srv, "0.0.0.0", "*"):
                    have.add((words[0], int(words[4].rsplit(":", 1)[1])))
            if want <= have:
                return
            if proc.poll() is not None or time.monotonic() > deadline:
                missing = sorted(f"{port}/{proto}" for proto, port in want - have)
                raise RuntimeError(
                    f"{what} does not listen on {', '.join(missing)} in {self.ns('srv')};"
                    f" see {self.dir / log}"
                )
            time.sleep(0.05)

    def _start_coturn(self) -> None:
        """coturn in the server's namespace, on the server's address; all of its
        configuration on the command line (-n: no configuration file), its files in
        the network's directory."""
        srv = self.addr("srv")
        d = self.dir
        argv = [
            "turnserver", "-n",
            f"--listening-ip={srv}", f"--relay-ip={srv}",
            f"--listening-port={COTURN_PORT}", f"--tls-listening-port={COTURN_TLS_PORT}",
            f"--min-port={COTURN_RELAY_PORTS[0]}", f"--max-port={COTURN_RELAY_PORTS[1]}",
            "--lt-cred-mech", f"--user={COTURN_USER}:{COTURN_PASSWORD}",
            f"--realm={COTURN_REALM}", "--fingerprint",
            f"--cert={self.cert_file}", f"--pkey={self.key_file}",
            "--no-dtls", "--no-tlsv1", "--no-tlsv1_1", "--no-rfc5780",
            # The peer of every relay is the LiveKit server, on the private subnet.
            f"--allowed-peer-ip={self.subnet}.0-{self.subnet}.255", "--no-multicast-peers",
            "--no-cli", f"--userdb={d / 'coturn.db'}", f"--pidfile={d / 'coturn.pid'}",
            f"--log-file={d / 'coturn.log'}", "--simple-log", "--no-stdout-log", "--verbose",
        ]  # fmt: skip
        with open(d / "coturn.out", "wb") as out:
            self.coturn_proc = subprocess.Popen(
                ["ip", "netns", "exec", self.ns("srv"), *argv], stdout=out, stderr=out
            )
        tcp, udp = [COTURN_PORT, COTURN_TLS_PORT], [COTURN_PORT]
        self._wait_listening(self.coturn_proc, "coturn", "coturn.log", tcp, udp)

    # ---- running programs -----------------------------------------------------------

    async def start_json(
        self,
        who: str,
        argv: Sequence[str],
        name: str = "",
        env: Optional[Dict[str, str]] = None,
    ) -> JsonProcess:
        """Starts `argv` in `who`'s namespace as a JSON-lines program, with `env`
        added to the environment."""
        name = name or who
        log = self.dir / f"{name}.log"
        with open(log, "wb") as err:
            proc = await asyncio.create_subprocess_exec(
                "ip", "netns", "exec", self.ns(who), *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                limit=16 * 1024 * 1024,
                env={**os.environ, **env} if env else None,
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
        return Fault(self, self._rules(who, up, down))

    def _rules(
        self, who: str, up: Sequence[str], down: Sequence[str]
    ) -> List[Tuple[str, List[str]]]:
        return [
            (self.ns("srv"), ["-s", self.addr(who), *up, "-j", "DROP"]),
            (self.ns(who), ["-s", self.addr("srv"), *down, "-j", "DROP"]),
        ]

    def block_server_ports(self, who: str, *ports: str) -> Fault:
        """`who` cannot reach the server's `ports`, each "PORT/PROTO" (7882/udp),
        "FIRST:LAST/PROTO" (a range) or "PROTO" (all of it, udp or tcp): its packets
        to them, and theirs to it, are dropped. Everything else still passes."""
        rules: List[Tuple[str, List[str]]] = []
        for spec in ports:
            port, _, proto = spec.rpartition("/")
            if proto not in ("udp", "tcp") or (port and not re.fullmatch(r"\d+(:\d+)?", port)):
                raise ValueError(f"port {spec!r}: PORT/udp, PORT/tcp, FIRST:LAST/udp, udp or tcp")
            up, down = ["-p", proto], ["-p", proto]
            if port:
                up += ["--dport", port]
                down += ["--sport", port]
            rules += self._rules(who, up, down)
        return Fault(self, rules)

    def block_direct_rtc(self, who: str) -> Fault:
        """`who` cannot reach the server's own ICE ports (7881/tcp, 7882/udp): its
        media can only go through a relay (the signal and the TURN ports pass)."""
        return self.block_server_ports(who, *DIRECT_RTC)

    def loss(self, who: str, probability: float, protocol: str = "udp") -> Fault:
        """Random loss of `probability` of `who`'s `protocol` packets ("all": every
        packet), each way."""
        odds = f"{probability:.3f}"
        random_drop = ["-m", "statistic", "--mode", "random", "--probability", odds]
        return self.fault(who, ["-p", protocol, *random_drop])

    def add_address(self, who: str, host: int) -> str:
        """Gives `who` a second IPv4 address, `<subnet>.host`, on its link (as when a
        device joins another network) and returns it. Faults keep matching the first
        address only."""
        extra = f"{self.subnet}.{host}"
        self._ip(who, "addr", "add", f"{extra}/24", "dev", "eth0")
        return extra

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
        for server in (self.coturn_proc, self.server):
            if server is not None and server.poll() is None:
                server.terminate()
                try:
                    server.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()
        for ns in reversed(self.made):
            _remove_namespace(ns)
        self.made.clear()
        if self.relays:
            for who in ["srv", *self.clients]:
                shutil.rmtree(ETC_NETNS / self.ns(who), ignore_errors=True)
            try:
                ETC_NETNS.rmdir()  # unless something else is there
            except OSError:
                pass
        (NOTES / self.name).unlink(missing_ok=True)
        if not keep_logs:
            shutil.rmtree(self.dir, ignore_errors=True)
        if self in _open:
            _open.remove(self)

    def __enter__(self) -> "TestNetwork":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


@asynccontextmanager
async def running(*clients: str, **options: Any) -> AsyncIterator[TestNetwork]:
    """A TestNetwork (clients "a" and "b" unless named; `options` as TestNetwork
    takes them) for one async test: its programs are stopped and the network closed
    at the end, the logs kept (and their path printed) when the test failed or
    LKT_KEEP_LOGS is set."""
    net = TestNetwork(clients=clients or ("a", "b"), **options)
    net.start()
    ok = False
    try:
        yield net
        ok = True
    finally:
        for p in net.procs:
            await p.stop(timeout=5)
        keep = not ok or bool(os.environ.get("LKT_KEEP_LOGS"))
        net.close(keep_logs=keep)
        if keep:
            print(f"network logs kept in {net.dir}", file=sys.stderr)


def arrivals(report: Dict[str, Any], topic: str) -> List[Tuple[int, float]]:
    """(index, arrival time) of each packet peer.py received on `topic`, in arrival
    order (from its "report")."""
    return [(int(i), float(t)) for i, t in report["data"].get(topic, [])]


def check_exactly_once_in_order(got: List[Tuple[int, float]], count: int) -> None:
    indices = [i for i, _ in got]
    duplicates = len(indices) - len(set(indices))
    missing = sorted(set(range(count)) - set(indices))
    assert duplicates == 0, f"{duplicates} duplicates"
    assert not missing, f"{len(missing)} missing, the first {missing[:10]}"
    assert indices == list(range(count)), "out of order"


@atexit.register
def _close_all() -> None:
    for net in list(_open):
        net.close(keep_logs=True)


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description="builds a test network and keeps it until Enter")
    ap.add_argument("--turn", action="store_true", help="the server's embedded TURN")
    ap.add_argument("--coturn", action="store_true", help="coturn beside the server")
    args = ap.parse_args()
    with TestNetwork(turn=args.turn, coturn=args.coturn) as net:
        info: Dict[str, Any] = {"name": net.name, "url": net.url, "logs": str(net.dir)}
        if net.relays:
            info["ca_file"] = net.ca_file
        if net.coturn:
            info["coturn"] = net.coturn_ice_server()
        print(json.dumps(info), flush=True)
        try:
            input()
        except EOFError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
