"""A robot with two edges on its domain (`edge_namespace:=*`, found in the ROS graph): it uses one, the one in use
is killed (kill -9) mid-stream, and every frame the robot accepted still gets exactly one answer, exact, while the
robot moves to the other edge and goes on collaborating there. Real processes over DDS, three launches."""
from __future__ import annotations

import os
import time

import cv2
import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from intradp_ros.engine.plan import Plan  # noqa: E402
from intradp_ros.launcher import share_dir, start  # noqa: E402
from intradp_ros.msg import DetectionArray, EdgeStatus, PlanStatus  # noqa: E402
from intradp_ros.nodes.common import topic_qos  # noqa: E402
from intradp_ros.runtime import ModelConfig, ModelRuntime  # noqa: E402
from intradp_ros.tools.params import with_overrides  # noqa: E402
from intradp_ros.topology import TOPICS, resolve  # noqa: E402
from intradp_ros.vision.samples import load_sample  # noqa: E402
from ros_helpers import spin_until, stream  # noqa: E402

WAIT = 120.0
EDGES = ("/edge_a", "/edge_b")


class User(Node):
    def __init__(self):
        super().__init__("intradp_two_edges_user")
        self.detections: list[tuple[float, DetectionArray]] = []
        self.plans: list[tuple[float, PlanStatus]] = []
        self.beats: dict[str, list[tuple[float, EdgeStatus]]] = {ns: [] for ns in EDGES}
        self.counters: dict[str, str] = {}
        self.diag_at = 0.0
        self.camera = self.create_publisher(Image, TOPICS["camera"].name, topic_qos("camera"))
        self.create_subscription(DetectionArray, TOPICS["detections"].name,
                                 lambda m: self.detections.append((time.monotonic(), m)), topic_qos("detections"))
        self.create_subscription(PlanStatus, TOPICS["plan"].name, lambda m: self.plans.append((time.monotonic(), m)),
                                 topic_qos("plan"))
        for ns in EDGES:
            self.create_subscription(EdgeStatus, resolve(TOPICS["edge_status"].name, ns),
                                     lambda m, ns=ns: self.beats[ns].append((time.monotonic(), m)),
                                     topic_qos("edge_status"))
        self.create_subscription(DiagnosticArray, TOPICS["diagnostics"].name, self._diag, 10)

    def _diag(self, msg):
        for st in msg.status:
            if st.name.lstrip("/") == "robot_node":
                self.counters = {kv.key: kv.value for kv in st.values}
                self.diag_at = time.monotonic()

    def spin_until(self, cond, what: str, timeout: float = WAIT):
        spin_until(self, cond, what, timeout)

    def stream(self, bgr, seconds: float, rate_hz: float = 3.0) -> None:
        """Camera frames at ``rate_hz`` for ``seconds``, spinning in between."""
        stream(self, self.camera, bgr, seconds, rate_hz, "two_edges_camera")

    def serving(self, session: str, since: float = 0.0) -> list[str]:
        """The edges whose latest heartbeat after ``since`` lists ``session``."""
        return [ns for ns, beats in self.beats.items()
                if beats and beats[-1][0] > since and session in beats[-1][1].robot_sessions]

    def robot(self, key: str) -> int:
        return int(self.counters.get(key, 0))


def test_the_robot_moves_to_the_other_edge_when_the_one_in_use_dies(tmp_path):
    bgr = load_sample("dog.jpg")
    if bgr is None:
        pytest.skip("sample images missing: ./intradp setup puts them in .cache/samples")
    model = ModelRuntime(ModelConfig())
    ref = model.reference(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    split = Plan("yolov3_tiny", 416, 416, 0, 18, 0, 1, 4)          # the edge computes every row of the segment
    domain = str(20 + os.getpid() % 80)
    env = dict(os.environ, ROS_DOMAIN_ID=domain)
    os.environ["ROS_DOMAIN_ID"] = domain
    edge_params = str(with_overrides(share_dir() / "config" / "edge.yaml",
                                     {"edge_node": {"profile_cache_dir": str(tmp_path)}}, tmp_path))
    robot_params = str(with_overrides(share_dir() / "config" / "robot.yaml", {"robot_node": {
        "plan": split.spec(), "profile_cache_dir": str(tmp_path), "send_selftest": False}}, tmp_path))
    edges = {}
    edges[EDGES[0]] = start("edge", {"params_file": edge_params, "namespace": EDGES[0]}, env=env)
    edges[EDGES[0]].wait_for_output(r"edge_node: model ", node="edge_node", timeout=WAIT)   # profiles once
    edges[EDGES[1]] = start("edge", {"params_file": edge_params, "namespace": EDGES[1]}, env=env)
    robot = start("robot", {"start_camera": "false", "params_file": robot_params, "edge_namespace": "*"}, env=env)
    rclpy.init()
    user = User()
    try:
        user.spin_until(lambda: any(s.node_name == "robot_node"
                                    for s in user.get_subscriptions_info_by_topic(TOPICS["camera"].name)),
                        "robot_node to listen to the camera")
        user.spin_until(lambda: user.plans, "the robot's plan")
        session = user.plans[-1][1].session
        user.stream(bgr, 3.0)
        user.spin_until(lambda: len(user.serving(session)) == 1, "one edge listing the robot")
        first = user.serving(session)[0]
        other = next(ns for ns in EDGES if ns != first)
        assert any(m.plan_spec == split.spec() for _, m in user.detections), "no collaborative frame on the first edge"
        # the first edge dies with frames in flight; the camera goes on
        edges[first].processes["edge_node"].kill()
        killed = time.monotonic()
        user.stream(bgr, 4.0)
        user.spin_until(lambda: user.serving(session, since=killed) == [other], f"{other} listing the robot")
        moved = next(t for t, m in user.beats[other] if t > killed and session in m.robot_sessions)
        user.spin_until(lambda: any(t > moved and m.plan_spec == split.spec() for t, m in user.plans),
                        "the collaborative plan again, on the other edge", 30.0)
        back = time.monotonic()
        user.stream(bgr, 3.0)
        on_other = [m for t, m in user.detections if t > back and m.plan_spec == split.spec()]
        assert on_other, "no collaborative frame on the other edge"
        for m in on_other:                                  # the other edge's part is exact too
            assert [d.class_name for d in m.detections] == [d.class_name for d in ref]
            for a, b in zip(m.detections, ref):
                assert abs(a.score - b.score) <= 1e-4 and abs(a.center_x - b.center_x) <= 1e-2

        def all_answered():    # the robot's counters, read after the last answer, match the answers
            accepted = user.robot("frames_processed") + user.robot("frame_errors")
            return accepted > 0 and user.diag_at > user.detections[-1][0] and len(user.detections) >= accepted
        user.spin_until(all_answered, "answers to every accepted frame", 60.0)
        seqs = [m.frame_seq for _, m in user.detections]
        accepted = user.robot("frames_processed") + user.robot("frame_errors")
        assert user.robot("frame_errors") == 0
        assert sorted(seqs) == list(range(1, accepted + 1)), "a frame unanswered or answered twice"
        assert user.robot("edge_lost") == 1 and user.robot("edge_switches") == 1
        print(f"moved from {first} to {other}: listed {moved - killed:.1f} s after the kill; {accepted} frames, "
              f"{user.robot('frames_rescued')} rescued")
    finally:
        user.destroy_node()
        rclpy.shutdown()
        for launch in (robot, *edges.values()):
            launch.stop()
        for name, lines in {**robot.output, **{f"{ns} edge_node": e.output.get("edge_node", ()) for ns, e in
                                               edges.items()}}.items():
            print(f"---- {name}\n" + "\n".join(list(lines)[-30:]))
