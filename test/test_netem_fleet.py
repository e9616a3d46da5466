"""The emulated link for a fleet (tools.netem.Testbed with robots=N): each robot namespace reaches the edge over
its own veth and subnet, cannot reach the other robots, has its own CPU cap and accounting, and every link is
shaped; close() removes it all. Needs root and network namespaces (skipped elsewhere)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from intradp_ros.tools import netem

PROBE = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    s.connect((sys.argv[1], 9))
    s.send(b"x")
    print("reachable")
except OSError as e:
    print("unreachable", e.errno)
"""


def _reach(tb: netem.Testbed, side: str, address: str) -> bool:
    out = subprocess.run(tb.wrap([sys.executable, "-c", PROBE, address], side), capture_output=True, text=True,
                         check=True).stdout
    return out.startswith("reachable")


@pytest.fixture
def fleet_testbed():
    reason = netem.unavailable_reason()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    tb = netem.Testbed(subnet="10.83.0", cpu_quota_us=2500, cpu_period_us=10000, log=lambda _line: None, robots=3)
    try:
        yield tb.setup()
    finally:
        tb.close()


def test_three_robots_each_on_their_own_link_and_cap(fleet_testbed):
    tb = fleet_testbed
    assert tb.robots == ["robot", "robot2", "robot3"]
    assert [tb.ip[r] for r in tb.robots] == ["10.83.0.1", "10.83.1.1", "10.83.2.1"]
    assert len(set(tb.addresses)) == 6
    for r in tb.robots:
        assert _reach(tb, r, tb.edge_ip[r])                          # its own link to the edge
        others = [o for o in tb.robots if o != r]
        assert not any(_reach(tb, r, tb.ip[o]) for o in others)      # no route to another robot
        assert (tb.cpu_dir / r / "cpu.cfs_quota_us").read_text().strip() == "2500"
        assert tb.acct_file("nodes", r).is_file()
    # a process wrapped for robot2's nodes runs in robot2's cgroup
    out = subprocess.run(tb.wrap(["cat", "/proc/self/cgroup"], "robot2", "nodes"), capture_output=True, text=True,
                         check=True).stdout
    assert f"/{tb.tag}/robot2/nodes" in out
    tb.shape(50)
    for r in tb.robots:
        for ns, dev in ((tb.ns[r], tb.dev[r]), (tb.ns["edge"], tb.edge_dev[r])):
            q = subprocess.run(["ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", dev], capture_output=True,
                               text=True, check=True).stdout
            assert "tbf" in q and "50Mbit" in q, q
    tb.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert tb.tag not in listed and not tb.cpu_dir.exists()
