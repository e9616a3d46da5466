"""The restricted Fast DDS profile (dds_interfaces / dds_peers): what it writes, and, in network namespaces, that a
robot restricted to its edge never hears a host that is not listed, which an unrestricted robot does hear."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from intradp_ros.launching.dds_profile import NS, discovery_environment, profile_for, restricted_profile

BASE = Path(__file__).resolve().parents[1] / "config" / "fastdds.xml"
# the namespaces share this host's /dev/shm, which real hosts do not: between them, UDP only (as the bench)
UDP = Path(__file__).resolve().parents[1] / "config" / "fastdds_udp.xml"


def _texts(xml: str, tag: str) -> list[str]:
    return [e.text for e in ET.fromstring(xml).iter(f"{{{NS}}}{tag}")]


def test_the_profile_whitelists_interfaces_and_loopback(tmp_path, monkeypatch):
    xml = restricted_profile(BASE.read_text(), ["10.0.0.5"])
    root = ET.fromstring(xml)
    white = [a.text for w in root.iter(f"{{{NS}}}interfaceWhiteList") for a in w]
    assert white == ["10.0.0.5", "127.0.0.1"]
    assert _texts(xml, "segment_size") == ["16777216"]                  # the base profile's settings stay
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    assert profile_for(str(BASE), "") == str(BASE)
    path = profile_for(str(BASE), "10.0.0.5,10.0.0.6")
    assert Path(path).parent == tmp_path / "intradp" and "10.0.0.6" in Path(path).read_text()
    assert profile_for(str(BASE), "10.0.0.5,10.0.0.6") == path       # same content, same file
    assert discovery_environment("10.0.0.9, 10.0.0.10") == {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
                                                            "ROS_STATIC_PEERS": "10.0.0.9;10.0.0.10"}
    assert discovery_environment("") == {}
    with pytest.raises(ValueError):
        restricted_profile("<dds xmlns='%s'><profiles/></dds>" % NS, ["10.0.0.5"])


PARTICIPANT = r"""
import sys, rclpy
from rclpy.node import Node
from std_msgs.msg import String
role = sys.argv[1]
rclpy.init()
n = Node(role)
if role == "robot":
    n.create_subscription(String, "chatter", lambda m: print(m.data, flush=True), 10)
else:
    pub = n.create_publisher(String, "chatter", 10)
    count = [0]
    def tick():
        count[0] += 1
        pub.publish(String(data=f"{role} {count[0]}"))
    n.create_timer(0.05, tick)
rclpy.spin(n)
"""


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "needs root and iproute2 (network namespaces)"
    return None


@pytest.fixture
def lan(tmp_path):
    """Three hosts on one switch (a bridge in the robot's namespace): the robot 10.79.0.1, its edge 10.79.0.2 and a
    stranger 10.79.0.3."""
    why = _netns_unavailable()
    if why:
        pytest.skip(why)
    tag = f"idpt{os.getpid()}"
    ns = {"robot": f"{tag}-r", "edge": f"{tag}-e", "stranger": f"{tag}-s"}

    def ip(*args):
        subprocess.run(["ip", *args], check=True, capture_output=True)
    try:
        for n in ns.values():
            ip("netns", "add", n)
            ip("-n", n, "link", "set", "lo", "up")
        r = ns["robot"]
        ip("-n", r, "link", "add", "br0", "type", "bridge")
        ip("-n", r, "addr", "add", "10.79.0.1/24", "dev", "br0")
        ip("-n", r, "link", "set", "br0", "up")
        ip("-n", r, "route", "add", "224.0.0.0/4", "dev", "br0")
        for k, side in enumerate(("edge", "stranger"), start=2):
            a, b = f"{tag}{side[0]}a", f"{tag}{side[0]}b"
            ip("link", "add", a, "netns", r, "type", "veth", "peer", "name", b, "netns", ns[side])
            ip("-n", r, "link", "set", a, "master", "br0")
            ip("-n", r, "link", "set", a, "up")
            ip("-n", ns[side], "addr", "add", f"10.79.0.{k}/24", "dev", b)
            ip("-n", ns[side], "link", "set", b, "up")
            ip("-n", ns[side], "route", "add", "224.0.0.0/4", "dev", b)
        yield ns
    finally:
        for n in ns.values():
            subprocess.run(["ip", "netns", "delete", n], capture_output=True)


def _start(ns: str, role: str, script: Path, domain: str, interfaces: str = "", peers: str = "") -> subprocess.Popen:
    """A participant as a launch with ``dds_interfaces``/``dds_peers`` starts its nodes (UDP only: see UDP)."""
    env = dict(os.environ, ROS_DOMAIN_ID=domain, PYTHONUNBUFFERED="1")
    for k in ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS", "ROS_AUTOMATIC_DISCOVERY_RANGE"):
        env.pop(k, None)
    env["FASTRTPS_DEFAULT_PROFILES_FILE"] = profile_for(str(UDP), interfaces)
    env.update(discovery_environment(peers))
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, str(script), role], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def _heard(robot: subprocess.Popen, edge_messages: int, timeout_s: float = 60.0) -> set[str]:
    """Who the robot heard until it received ``edge_messages`` of the edge's (AssertionError if not in time)."""
    import selectors
    import time
    who, edge = set(), 0
    sel = selectors.DefaultSelector()
    sel.register(robot.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout_s
    while edge < edge_messages:
        left = deadline - time.monotonic()
        assert left > 0 and robot.poll() is None, f"heard {sorted(who)}, {edge} edge messages in {timeout_s} s"
        if not sel.select(timeout=left):
            continue
        line = robot.stdout.readline()
        if line:
            who.add(line.split()[0])
            edge += line.startswith("edge ")
    return who


def test_a_robot_restricted_to_its_edge_never_hears_a_stranger(lan, tmp_path):
    pytest.importorskip("rclpy")
    script = tmp_path / "participant.py"
    script.write_text(PARTICIPANT)
    domain = str(230 + os.getpid() % 2)
    os.environ["ROS_HOME"] = str(tmp_path)
    procs = [_start(lan["edge"], "edge", script, domain, "10.79.0.2", "10.79.0.1"),
             _start(lan["stranger"], "stranger", script, domain)]                     # multicast discovery
    try:
        # restricted to its interface and its edge: the edge only, over 200 of its messages (10 s) ...
        robot = _start(lan["robot"], "robot", script, domain, "10.79.0.1", "10.79.0.2")
        procs.append(robot)
        assert _heard(robot, 200) == {"edge"}
        robot.kill()
        # ... where an unrestricted robot hears the stranger within its first 60
        robot = _start(lan["robot"], "robot", script, domain)
        procs.append(robot)
        assert _heard(robot, 60) == {"edge", "stranger"}
    finally:
        for p in procs:
            p.kill()
            p.wait()
