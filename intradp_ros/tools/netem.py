"""An emulated robot-edge link on one Linux machine: two network namespaces, a veth pair shaped with tbf in
both directions, and a cgroup v1 CPU quota that makes the robot's processes a slow computer.

Used by :mod:`intradp_ros.tools.bench`; needs root, iproute2 (``ip``, ``tc``) and the cgroup v1 ``cpu`` and
``cpuacct`` controllers (mounted together or apart). No netem (delay/loss) is needed: only tbf (rate).

Every object is named ``idpb<pid>...`` after the process that created it, so parallel runs do not collide and
:func:`cleanup_stale` can remove what a crashed run left behind (its pid is gone) without touching live runs.

    with Testbed() as tb:              # namespaces, veth, addresses, cgroups
        tb.shape(50)                   # 50 Mbit/s each way
        argv = tb.wrap(["python", "-c", "..."], "robot", cgroup="nodes")   # start it inside the robot
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

__all__ = ["NetemError", "Testbed", "LinkShape", "unavailable_reason", "cleanup_stale", "PREFIX"]

PREFIX = "idpb"                      # netns idpb<pid>-robot / -edge, veth idpb<pid>r / e, cgroup idpb<pid>
CGROUP_ROOT = Path("/sys/fs/cgroup")
_NAME = re.compile(rf"^{PREFIX}(\d+)")


class NetemError(RuntimeError):
    """A command of the emulation failed."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and p.returncode != 0:
        raise NetemError(f"{' '.join(argv)}: {p.stderr.strip() or p.stdout.strip() or p.returncode}")
    return p


def _controller_dirs() -> dict[str, Path]:
    """Mount points of the cgroup v1 cpu and cpuacct controllers (maybe the same directory)."""
    found = {}
    try:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return found
    for line in mounts:
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup":
            opts = set(parts[3].split(","))
            for c in ("cpu", "cpuacct"):
                if c in opts:
                    found[c] = Path(parts[1])
    return found


def unavailable_reason() -> str | None:
    """Why the emulation cannot run here (None if it can): root, ip netns, tc tbf, cgroup v1 cpu/cpuacct."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, tc and cgroups)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"`{tool}` (iproute2) not found"
    if _run("ip", "netns", "list", check=False).returncode != 0:
        return "`ip netns` does not work here"
    dirs = _controller_dirs()
    if "cpu" not in dirs or not (dirs["cpu"] / "cpu.cfs_quota_us").exists():
        return "no cgroup v1 cpu controller with cpu.cfs_quota_us (cgroup v2-only system?)"
    if "cpuacct" not in dirs or not (dirs["cpuacct"] / "cpuacct.usage").exists():
        return "no cgroup v1 cpuacct controller"
    probe = f"{PREFIX}{os.getpid()}probe"
    p = _run("ip", "netns", "add", probe, check=False)
    if p.returncode != 0:
        return f"cannot create a network namespace: {p.stderr.strip()}"
    try:
        _run("ip", "-n", probe, "link", "set", "lo", "up")
        p = _run("ip", "netns", "exec", probe, "tc", "qdisc", "replace", "dev", "lo", "root", "tbf", "rate",
                 "10mbit", "burst", "32kb", "latency", "50ms", check=False)
        if p.returncode != 0:
            return f"tc tbf unavailable: {p.stderr.strip()}"
    finally:
        _run("ip", "netns", "delete", probe, check=False)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_pids(pids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = [p for p in pids if _alive(p)]
        for p in left:
            try:
                os.kill(p, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3.0
        while any(_alive(p) for p in left) and time.monotonic() < deadline:
            time.sleep(0.05)


def _remove_cgroup_tree(path: Path) -> None:
    """Move any process left in the cgroup tree to the root group, then remove it leaves first."""
    if not path.is_dir():
        return
    root_procs = path.parent / "cgroup.procs"
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [path]:
        try:
            for pid in (sub / "cgroup.procs").read_text().split():
                try:
                    root_procs.write_text(pid)
                except OSError:
                    pass
            sub.rmdir()
        except OSError:
            pass


def cleanup_stale(log=print) -> list[str]:
    """Remove namespaces (and their processes), veths and cgroups of earlier runs whose process is gone."""
    removed = []
    me = os.getpid()
    out = _run("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NAME.match(name)
        if m and int(m.group(1)) != me and not _alive(int(m.group(1))):
            pids = [int(p) for p in _run("ip", "netns", "pids", name, check=False).stdout.split()]
            _kill_pids(pids)
            _run("ip", "netns", "delete", name, check=False)
            removed.append(f"netns {name}")
    for dev in Path("/sys/class/net").glob(f"{PREFIX}*"):
        m = _NAME.match(dev.name)
        if m and int(m.group(1)) != me and not _alive(int(m.group(1))):
            _run("ip", "link", "delete", dev.name, check=False)
            removed.append(f"link {dev.name}")
    for base in set(_controller_dirs().values()):
        for grp in base.glob(f"{PREFIX}*"):
            m = _NAME.match(grp.name)
            if grp.is_dir() and m and int(m.group(1)) != me and not _alive(int(m.group(1))):
                _remove_cgroup_tree(grp)
                removed.append(f"cgroup {grp}")
    for r in removed:
        log(f"removed a leftover of a crashed run: {r}")
    return removed


@dataclasses.dataclass(frozen=True)
class LinkShape:
    rate_mbps: float
    burst_bytes: int
    latency_ms: float

    @classmethod
    def for_rate(cls, rate_mbps: float, burst_ms: float = 2.0, min_burst: int = 16384,
                 queue_bytes: int = 32 << 20) -> "LinkShape":
        """A tbf bucket for ``rate_mbps``: ``burst_ms`` of line rate (at least ``min_burst`` bytes, several MTUs),
        and a queue (tbf's latency = queue_bytes at the rate) deeper than a UDP socket's send buffer, so a burst of
        large DDS samples queues (the sender's socket blocks: the link paces it) instead of being dropped, which
        would cost a reliable-retransmission round per lost datagram."""
        burst = max(min_burst, int(rate_mbps * 1e6 / 8 * burst_ms / 1e3))
        return cls(rate_mbps, burst, queue_bytes * 8 / (rate_mbps * 1e6) * 1e3)


class Testbed:
    """Robot namespaces, each joined to one edge namespace by its own veth pair; each robot's CPU cap; cleanup on
    every path. One robot by default (the bench); ``robots=N`` for a fleet: sides "robot", "robot2", ..., each with
    its own link (subnet ``<a>.<b>.<c+k>``, robot .1, edge .2), its own cap and CPU accounting, and no route to the
    other robots.

    Attributes:
        ns: side -> namespace name; dev: side -> veth name (inside that namespace; "edge": the edge's end of the
        first robot's link); ip: side -> address ("edge": its address on the first link); robots: the robot sides;
        edge_dev / edge_ip: robot side -> the edge's end of that robot's link and its address there.
    """

    def __init__(self, subnet: str = "10.77.0", cpu_quota_us: int = 2500, cpu_period_us: int = 10000,
                 mtu: int = 1500, log=print, robots: int = 1):
        pid = os.getpid()
        self.tag = f"{PREFIX}{pid}"
        self.robots = ["robot", *(f"robot{k}" for k in range(2, robots + 1))]
        net, third = subnet.rsplit(".", 1)
        self.ns = {side: f"{self.tag}-{side}" for side in [*self.robots, "edge"]}
        self.dev = {side: f"{self.tag}r{k + 1 if k else ''}" for k, side in enumerate(self.robots)}
        self.edge_dev = {side: f"{self.tag}e{k + 1 if k else ''}" for k, side in enumerate(self.robots)}
        self.ip = {side: f"{net}.{int(third) + k}.1" for k, side in enumerate(self.robots)}     # 10.77.0.1, 10.77.1.1
        self.edge_ip = {side: f"{net}.{int(third) + k}.2" for k, side in enumerate(self.robots)}
        self.dev["edge"], self.ip["edge"] = self.edge_dev["robot"], self.edge_ip["robot"]
        self.cpu_quota_us, self.cpu_period_us, self.mtu = cpu_quota_us, cpu_period_us, mtu
        self.log = log
        self.shape_now: LinkShape | None = None
        dirs = _controller_dirs()
        self.cpu_dir = dirs.get("cpu", CGROUP_ROOT / "cpu") / self.tag
        self.acct_dir = dirs.get("cpuacct", CGROUP_ROOT / "cpuacct") / self.tag
        # one robot: its cap on the run's group itself (as the bench always had it); several: a group each
        self._group = {side: Path() if robots == 1 else Path(side) for side in self.robots}
        self._up = False

    @property
    def cpu_fraction(self) -> float:
        """Share of one host core each robot's processes get (1.0 when uncapped)."""
        return self.cpu_quota_us / self.cpu_period_us if self.cpu_quota_us > 0 else 1.0

    @property
    def addresses(self) -> list[str]:
        """Every address of the testbed (the robots', the edge's on each link): ROS_STATIC_PEERS."""
        return [*(self.ip[r] for r in self.robots), *(self.edge_ip[r] for r in self.robots)]

    # ------------------------------------------------------------------ set-up / tear-down
    def setup(self) -> "Testbed":
        self._up = True          # from here on, close() removes whatever exists
        for ns in self.ns.values():
            _run("ip", "netns", "add", ns)
        _run("ip", "-n", self.ns["edge"], "link", "set", "lo", "up")
        for k, side in enumerate(self.robots):
            ns, dev, edev = self.ns[side], self.dev[side], self.edge_dev[side]
            _run("ip", "link", "add", dev, "mtu", str(self.mtu), "netns", ns, "type", "veth",
                 "peer", "name", edev, "mtu", str(self.mtu), "netns", self.ns["edge"])
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            for n, d, a in ((ns, dev, self.ip[side]), (self.ns["edge"], edev, self.edge_ip[side])):
                _run("ip", "-n", n, "addr", "add", f"{a}/30", "dev", d)
                _run("ip", "-n", n, "link", "set", d, "up")
            # DDS discovery is multicast; the namespace has no default route, so send it over the veth (the edge:
            # over the first link; it finds the other robots through their multicast and ROS_STATIC_PEERS)
            _run("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
            if k == 0:
                _run("ip", "-n", self.ns["edge"], "route", "add", "224.0.0.0/4", "dev", edev)
        for d in {self.cpu_dir, self.acct_dir}:
            d.mkdir(exist_ok=True)
            for side in self.robots:
                for leaf in ("", "nodes", "client"):
                    (d / self._group[side] / leaf).mkdir(exist_ok=True)
        if self.cpu_quota_us > 0:
            for side in self.robots:
                (self.cpu_dir / self._group[side] / "cpu.cfs_period_us").write_text(str(self.cpu_period_us))
                (self.cpu_dir / self._group[side] / "cpu.cfs_quota_us").write_text(str(self.cpu_quota_us))
        return self

    def close(self) -> None:
        """Kill what still runs in the namespaces, delete them (the veths go with them), remove the cgroups."""
        if not self._up:
            return
        self._up = False
        for ns in self.ns.values():
            pids = [int(p) for p in _run("ip", "netns", "pids", ns, check=False).stdout.split()]
            _kill_pids([p for p in pids if p != os.getpid()])
            _run("ip", "netns", "delete", ns, check=False)
        for d in {self.cpu_dir, self.acct_dir}:
            _remove_cgroup_tree(d)

    def __enter__(self) -> "Testbed":
        return self.setup()

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ use
    def shape(self, rate_mbps: float, **kw) -> LinkShape:
        """tbf at ``rate_mbps`` on both ends of every robot's veth (each end shapes what it sends)."""
        s = LinkShape.for_rate(rate_mbps, **kw)
        for side in self.robots:
            for ns, dev in ((self.ns[side], self.dev[side]), (self.ns["edge"], self.edge_dev[side])):
                _run("ip", "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root", "tbf",
                     "rate", f"{rate_mbps:g}mbit", "burst", str(s.burst_bytes), "latency", f"{s.latency_ms:g}ms")
        self.shape_now = s
        return s

    def qdisc_stats(self, side: str) -> dict:
        """tc's counters of the tbf on ``side``'s veth ("edge": its end of the first link): bytes, packets, drops,
        overlimits."""
        p = _run("ip", "netns", "exec", self.ns[side], "tc", "-s", "-j", "qdisc", "show", "dev", self.dev[side],
                 check=False)
        try:
            q = json.loads(p.stdout)[0]
            return {k: int(q.get(k, 0)) for k in ("bytes", "packets", "drops", "overlimits")}
        except (ValueError, IndexError, KeyError):
            return {}

    def acct_file(self, group: str, side: str = "robot") -> Path:
        """cpuacct.usage (ns) of ``group`` ("nodes" or "client") of robot ``side``."""
        return self.acct_dir / self._group[side] / group / "cpuacct.usage"

    def wrap(self, argv: list[str], side: str, cgroup: str | None = None) -> list[str]:
        """``argv`` run in ``side``'s namespace; with ``cgroup`` ("nodes" | "client") under that robot's CPU cap and
        CPU accounting. The process joins the cgroups before exec, so all its threads and children are in them."""
        prefix: list[str] = []
        if cgroup:
            procs = sorted({str(d / self._group[side] / cgroup / "cgroup.procs")
                            for d in (self.cpu_dir, self.acct_dir)})
            script = "for f in " + " ".join(f'"${i + 1}"' for i in range(len(procs))) + \
                     '; do echo $$ > "$f" || exit 111; done; shift ' + str(len(procs)) + '; exec "$@"'
            prefix = ["sh", "-c", script, "sh", *procs]
        return [*prefix, "ip", "netns", "exec", self.ns[side], *argv]
