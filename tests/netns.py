"""Network hosts of the tests' own on this machine: Linux network namespaces on one private bridge.

Each host is a network namespace with its own loopback and one address on 10.x.y.0/24, wired by a veth pair to
a bridge that lives in a namespace of its own (the "switch"): nothing of the machine's own network changes, and
the hosts reach each other and nothing else. A process runs "on" a host with `ip netns exec`; the filesystem is
the machine's, so a host's state is told apart by its own RLO_HOME.

Faults, with iproute2 alone (this kernel has no netem, nftables or iptables):
- `cut(host)`: the host's link goes down (its cable pulled): its packets go nowhere and it knows it.
- `partition(a, b)`: traffic between two hosts is silently dropped, everything else flows. Each side's neighbour
  entry for the other gets a MAC address no interface has; the bridge floods those frames and every port drops
  them, as a firewall that drops would. No RST, no ICMP: the peers see only silence, as in a real partition.
- `heal(a, b)` / `reconnect(host)` undo them.

Everything is removed on `close()` (the processes left in each namespace are killed first, by the pids the kernel
lists for that namespace, never by name), and namespaces left by a test process that died are removed by the
next one (their names carry the creating pid)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field

PREFIX = "rlo"  # namespaces: rlo<pid>x<hex>-<host>; interfaces: short names (15 chars at most)


def available() -> str | None:
    """Why network hosts cannot be made here (None: they can)."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}{os.getpid()}probe"
    res = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if res.returncode != 0:
        return f"`ip netns add` failed: {res.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {res.stderr.strip()}")
    return res


def _kill_namespace_processes(ns: str, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL, to every process the kernel lists in the namespace (a Ray node's whole tree)."""

    def pids() -> list[int]:
        res = _ip("netns", "pids", ns, check=False)
        return [int(p) for p in res.stdout.split()] if res.returncode == 0 else []

    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        for pid in pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while pids() and time.monotonic() < deadline:
            time.sleep(0.2)


def remove_stale() -> list[str]:
    """Namespaces made by a test process that no longer runs (it was killed before it could clean up)."""
    removed = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not name.startswith(PREFIX) or "x" not in name[len(PREFIX) :]:
            continue
        pid = name[len(PREFIX) :].split("x", 1)[0]
        if not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        _kill_namespace_processes(name, timeout=5)
        _ip("netns", "del", name, check=False)
        removed.append(name)
    return removed


@dataclass
class Host:
    name: str
    ns: str
    ip: str
    dev: str  # the host's end of its link
    port: str  # the switch's end
    mac: str = ""
    network: Network = field(repr=False, default=None)

    def cmd(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, argv: list[str], **kw) -> subprocess.CompletedProcess:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 600)
        return subprocess.run(self.cmd(argv), **kw)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(argv), **kw)

    def listening(self) -> list[tuple[str, int, str]]:
        """(address, port, process) of every TCP socket listening on this host, from `ss`."""
        out = self.run(["ss", "-Hltnp"]).stdout
        rows = []
        for line in out.splitlines():
            parts = line.split()
            local = parts[3]
            addr, _, port = local.rpartition(":")
            proc = parts[5] if len(parts) > 5 else ""
            rows.append((addr.strip("[]"), int(port), proc))
        return rows


class Network:
    """Hosts on one bridge: `Network(["head", "sim1", "sim2", "client"])`, then `net["head"].ip` and so on."""

    def __init__(self, names: list[str], subnet: int | None = None) -> None:
        remove_stale()
        self.tag = f"{os.getpid()}x{secrets.token_hex(2)}"
        self.subnet = subnet if subnet is not None else 100 + secrets.randbelow(150)
        self.switch = f"{PREFIX}{self.tag}-sw"
        self.hosts: dict[str, Host] = {}
        self._made: list[str] = []
        try:
            self._add_ns(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for i, name in enumerate(names):
                self.add_host(name, index=i)
        except BaseException:
            self.close()
            raise

    def _add_ns(self, ns: str) -> None:
        _ip("netns", "add", ns)
        self._made.append(ns)
        _ip("-n", ns, "link", "set", "lo", "up")

    def add_host(self, name: str, index: int | None = None) -> Host:
        index = len(self.hosts) if index is None else index
        ns = f"{PREFIX}{self.tag}-{name}"
        short = secrets.token_hex(3)
        dev, port = f"rh{short}", f"rs{short}"
        self._add_ns(ns)
        _ip("link", "add", dev, "type", "veth", "peer", "name", port)
        _ip("link", "set", dev, "netns", ns)
        _ip("link", "set", port, "netns", self.switch)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        address = f"10.{self.subnet}.0.{index + 2}"
        _ip("-n", ns, "addr", "add", f"{address}/24", "dev", dev)
        _ip("-n", ns, "link", "set", dev, "up")
        mac = _ip("-n", ns, "-o", "link", "show", dev).stdout.split("link/ether ")[1].split()[0]
        host = Host(name, ns, address, dev, port, mac, self)
        self.hosts[name] = host
        return host

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    # --- faults ---------------------------------------------------------------------------------------------------

    def cut(self, host: Host) -> None:
        _ip("-n", host.ns, "link", "set", host.dev, "down")

    def reconnect(self, host: Host) -> None:
        _ip("-n", host.ns, "link", "set", host.dev, "up")

    def partition(self, a: Host, b: Host) -> None:
        nowhere = "02:00:00:00:00:01"  # locally administered; no interface here has it
        for x, y in ((a, b), (b, a)):
            _ip("-n", x.ns, "neigh", "replace", y.ip, "lladdr", nowhere, "dev", x.dev, "nud", "permanent")

    def heal(self, a: Host, b: Host) -> None:
        for x, y in ((a, b), (b, a)):
            _ip("-n", x.ns, "neigh", "replace", y.ip, "lladdr", y.mac, "dev", x.dev, "nud", "reachable")

    def reachable(self, a: Host, b: Host, port: int, timeout: float = 2.0) -> bool:
        """Whether a TCP connection from host a to b:port is accepted (run on a, so through the network)."""
        code = (
            "import socket,sys\n"
            f"s=socket.socket(); s.settimeout({timeout})\n"
            f"sys.exit(0 if s.connect_ex(({b.ip!r},{port}))==0 else 1)"
        )
        import sys

        return a.run([sys.executable, "-c", code], timeout=timeout + 30).returncode == 0

    # --- teardown -------------------------------------------------------------------------------------------------

    def close(self) -> None:
        for ns in reversed(self._made):
            _kill_namespace_processes(ns)
        for ns in reversed(self._made):
            _ip("netns", "del", ns, check=False)  # the veth pairs go with their namespaces
        self._made.clear()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
