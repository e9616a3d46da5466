"""robot_node and edge_node are lifecycle nodes, and a node that cannot start says why in one line and exits
non-zero. Real processes through the launcher, driven over the standard lifecycle services."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.node import Node  # noqa: E402

from intradp_ros.launcher import share_dir, start  # noqa: E402
from intradp_ros.msg import EdgeStatus  # noqa: E402
from intradp_ros.nodes.common import topic_qos  # noqa: E402
from intradp_ros.tools.params import with_overrides  # noqa: E402
from intradp_ros.topology import TOPICS  # noqa: E402

WAIT = 120.0


def _rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


class Operator(Node):
    """What `ros2 lifecycle get/set` does: the node's lifecycle services."""

    def __init__(self, target: str):
        super().__init__("intradp_lifecycle_operator")
        self.get = self.create_client(GetState, f"/{target}/get_state")
        self.change = self.create_client(ChangeState, f"/{target}/change_state")
        self.params = self.create_client(SetParameters, f"/{target}/set_parameters")
        self.beats: list[float] = []
        self.create_subscription(EdgeStatus, TOPICS["edge_status"].name, lambda m: self.beats.append(time.monotonic()),
                                 topic_qos("edge_status"))

    def call(self, client, request, timeout: float = WAIT):
        assert client.wait_for_service(timeout_sec=timeout), f"{client.srv_name} not offered"
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self, future, timeout_sec=timeout)
        assert future.done(), f"{client.srv_name} did not answer"
        return future.result()

    def state(self) -> int:
        return self.call(self.get, GetState.Request()).current_state.id

    def set(self, transition: int) -> bool:
        return self.call(self.change, ChangeState.Request(transition=Transition(id=transition))).success

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            rclpy.spin_once(self, timeout_sec=0.05)


@pytest.fixture
def domain():
    old = os.environ.get("ROS_DOMAIN_ID")
    os.environ["ROS_DOMAIN_ID"] = str(100 + os.getpid() % 50)
    rclpy.init()
    yield dict(os.environ)
    rclpy.shutdown()
    if old is None:
        os.environ.pop("ROS_DOMAIN_ID", None)
    else:
        os.environ["ROS_DOMAIN_ID"] = old


def test_edge_lifecycle_serves_only_when_active_and_cleanup_releases_the_model(tmp_path, domain):
    edge = with_overrides(share_dir() / "config" / "edge.yaml", {"edge_node": {"profile_cache_dir": str(tmp_path),
                                                                                "device": "cpu"}}, tmp_path)
    launch = start("edge", {"params_file": str(edge), "autostart": "false"}, env=domain)
    op = Operator("edge_node")
    try:
        pid = launch.processes["edge_node"].pid
        assert op.state() == State.PRIMARY_STATE_UNCONFIGURED
        bare = _rss_mib(pid)
        assert op.set(Transition.TRANSITION_CONFIGURE) and op.state() == State.PRIMARY_STATE_INACTIVE
        loaded = _rss_mib(pid)
        assert loaded > bare + 20, f"configure loaded no model? RSS {bare:.0f} -> {loaded:.0f} MiB"
        op.spin_for(1.0)
        assert not op.beats, "an inactive edge must not beat: robots would send it tiles"
        assert op.set(Transition.TRANSITION_ACTIVATE) and op.state() == State.PRIMARY_STATE_ACTIVE
        deadline = time.monotonic() + 10
        while not op.beats and time.monotonic() < deadline:
            op.spin_for(0.1)
        assert op.beats, "an active edge beats"
        assert op.set(Transition.TRANSITION_DEACTIVATE) and op.state() == State.PRIMARY_STATE_INACTIVE
        deadline = time.monotonic() + 10
        while op.count_publishers(TOPICS["edge_status"].name) and time.monotonic() < deadline:
            op.spin_for(0.1)             # the heartbeat's writer is destroyed: robots' liveliness sees it go
        assert op.count_publishers(TOPICS["edge_status"].name) == 0
        stopped = time.monotonic()
        op.spin_for(1.0)
        assert not [t for t in op.beats if t > stopped], "a deactivated edge still beats"
        assert op.set(Transition.TRANSITION_CLEANUP) and op.state() == State.PRIMARY_STATE_UNCONFIGURED
        released = _rss_mib(pid)
        assert released < loaded - 15, f"cleanup kept the model: RSS {loaded:.0f} -> {released:.0f} MiB"
        assert op.set(Transition.TRANSITION_CONFIGURE) and op.state() == State.PRIMARY_STATE_INACTIVE  # again
        # a parameter outside its declared range is refused by rcl, the range in the reason (ros2 param set)
        value = ParameterValue(type=ParameterType.PARAMETER_DOUBLE, double_value=0.01)
        result = op.call(op.params, SetParameters.Request(parameters=[Parameter(name="frame_timeout_s",
                                                                                  value=value)])).results[0]
        assert not result.successful and re.search(r"frame_timeout_s out of range.*Min: 0\.1, Max: 3600", result.reason)
        assert launch.processes["edge_node"].poll() is None
    finally:
        op.destroy_node()
        launch.stop(timeout=10.0)


def test_a_deactivated_robot_takes_no_frames_and_an_activated_one_does(tmp_path, domain):
    """robot_node alone (plan local: it needs no edge), autostarted: deactivate drops its camera subscription,
    activate brings it back."""
    robot = with_overrides(share_dir() / "config" / "robot.yaml",
                           {"robot_node": {"plan": "local", "profile_cache_dir": str(tmp_path)}}, tmp_path)
    launch = start("robot", {"params_file": str(robot)}, env=domain)
    op = Operator("robot_node")

    def listening() -> bool:
        return any(s.node_name == "robot_node" for s in op.get_subscriptions_info_by_topic(TOPICS["camera"].name))

    def until(cond, what: str) -> None:
        deadline = time.monotonic() + WAIT
        while not cond():
            assert time.monotonic() < deadline and launch.poll() is None, f"{what}: {list(launch.lines)[-20:]}"
            op.spin_for(0.1)

    try:
        until(listening, "robot_node listening to the camera (autostart)")
        assert op.state() == State.PRIMARY_STATE_ACTIVE
        assert op.set(Transition.TRANSITION_DEACTIVATE) and op.state() == State.PRIMARY_STATE_INACTIVE
        until(lambda: not listening(), "the deactivated robot_node to drop its camera subscription")
        assert op.set(Transition.TRANSITION_ACTIVATE)
        until(listening, "robot_node listening again")
    finally:
        op.destroy_node()
        launch.stop(timeout=10.0)


def _launcher(host: str, args: dict, env: dict) -> subprocess.CompletedProcess:
    """`./intradp launch <host> name:=value ...`, as a user runs it."""
    argv = [sys.executable, "-m", "intradp_ros.launcher", host, *(f"{k}:={v}" for k, v in args.items())]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=WAIT)


@pytest.mark.parametrize("host,args,line", [
    ("edge", {"model": "nonexistent"}, r"unknown model 'nonexistent'; known models: .*yolov3_tiny"),
    ("edge", {"device": "cuda:7"}, r"device 'cuda:7': .*; choose one of: cpu, auto"),
    ("robot", {"device": "tpu"}, r"device 'tpu': .*choose one of: cpu, auto"),
    ("robot", {"plan": "bogus"}, r"plan 'bogus' is none of auto \| local \| offload"),
])
def test_a_node_that_cannot_start_says_why_in_one_line_and_the_launch_fails(tmp_path, domain, host, args, line):
    node = f"{host}_node"
    plan = {"plan": args.pop("plan")} if "plan" in args else {}
    params = with_overrides(share_dir() / "config" / f"{host}.yaml",
                            {node: {"profile_cache_dir": str(tmp_path), **plan}}, tmp_path)
    done = _launcher(host, {"params_file": str(params), **args}, domain)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    errors = [ln for ln in out.splitlines() if "ERROR" in ln and f"[{node}]" in ln]
    assert len(errors) == 1 and re.search(r"cannot start: " + line, errors[0]), out
    assert "Traceback" not in out, out
