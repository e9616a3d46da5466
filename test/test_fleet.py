"""Two robots in two namespaces share ONE edge_node process (real processes over DDS, `./intradp launch`).

`robot.launch.py namespace:=robotN` resolves the edge-facing topics in `edge_namespace` (default the root), so
both robots find the edge started by `edge.launch.py`. Each gets detections equal to single-process inference,
stamped like its own camera frames, under its own plan; stopping one leaves the other served and the edge with no
frame of it in flight.
"""
from __future__ import annotations

import os

import cv2
import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from intradp_ros.engine.plan import Plan  # noqa: E402
from intradp_ros.engine.rows import Segment  # noqa: E402
from intradp_ros.launcher import share_dir, start  # noqa: E402
from intradp_ros.launching.qos_file import resolve  # noqa: E402
from intradp_ros.msg import DetectionArray, EdgeStatus, PlanStatus  # noqa: E402
from intradp_ros.nodes.common import topic_qos  # noqa: E402
from intradp_ros.runtime import ModelConfig, ModelRuntime  # noqa: E402
from intradp_ros.tools.params import with_overrides  # noqa: E402
from intradp_ros.topology import TOPICS  # noqa: E402
from intradp_ros.vision.image_convert import array_to_image_fields  # noqa: E402
from intradp_ros.vision.samples import load_sample  # noqa: E402
from ros_helpers import print_outputs, robot_listening, spin_until  # noqa: E402

WAIT = 120.0
ROBOTS = ("robot1", "robot2", "robot3")       # robot3 comes when the edge is full (max_robots 2)


class Client(Node):
    def __init__(self):
        super().__init__("intradp_test_fleet")
        self.detections = {ns: [] for ns in ROBOTS}
        self.cameras = {ns: self.create_publisher(Image, resolve(TOPICS["camera"].name, ns), topic_qos("camera"))
                        for ns in ROBOTS}
        for ns in ROBOTS:
            self.create_subscription(DetectionArray, resolve(TOPICS["detections"].name, ns),
                                     self.detections[ns].append, topic_qos("detections"))
        self.plans = {ns: [] for ns in ROBOTS}
        for ns in ROBOTS:
            self.create_subscription(PlanStatus, resolve(TOPICS["plan"].name, ns), self.plans[ns].append,
                                     topic_qos("plan"))
        self.status: list[EdgeStatus] = []
        self.create_subscription(EdgeStatus, resolve(TOPICS["edge_status"].name, "/"), self.status.append,
                                 topic_qos("edge_status"))

    def spin_until(self, cond, what: str, timeout: float = WAIT):
        spin_until(self, cond, what, timeout)

    def send(self, ns: str, bgr) -> Image:
        msg = Image(**array_to_image_fields(bgr, "bgr8"))
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = f"{ns}_camera"
        self.cameras[ns].publish(msg)
        return msg


def _same(got: DetectionArray, ref) -> None:
    assert [d.class_name for d in got.detections] == [d.class_name for d in ref]
    for a, b in zip(got.detections, ref):
        assert abs(a.score - b.score) <= 1e-4 and abs(a.center_x - b.center_x) <= 1e-2


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    if load_sample("dog.jpg") is None:
        pytest.skip("sample images missing: ./intradp setup puts them in .cache/samples")
    tmp = tmp_path_factory.mktemp("fleet")
    model = ModelRuntime(ModelConfig())
    g = model.graph
    n = len(g.ops)
    plans = {"robot1": Plan("yolov3_tiny", 416, 416, 0, n, Segment(g, 0, n).grid // 2, 2, 3),   # rows shared
             "robot2": Plan.cut(g, "yolov3_tiny", 12, "lz4"),                                  # a layer-wise cut
             "robot3": Plan.offload(g, "yolov3_tiny")}
    domain = str(100 + (os.getpid() + 61) % 100)
    env = dict(os.environ, ROS_DOMAIN_ID=domain)
    edge = start("edge", {"params_file": str(with_overrides(share_dir() / "config" / "edge.yaml", {
        "edge_node": {"profile_cache_dir": str(tmp), "frame_timeout_s": 3.0, "max_robots": 2}}, tmp))}, env=env)
    robots = {}

    def start_robot(ns: str):
        params = with_overrides(share_dir() / "config" / "robot.yaml", {
            "robot_node": {"plan": plans[ns].spec(), "profile_cache_dir": str(tmp)}}, tmp)
        robots[ns] = start("robot", {"namespace": ns, "start_camera": "false", "params_file": str(params)}, env=env)
        camera = resolve(TOPICS["camera"].name, ns)
        client.spin_until(lambda: robot_listening(client, client.cameras[ns], camera)
                          or robots[ns].poll() not in (None, 0), f"{ns}'s robot_node to become ready")
        assert robots[ns].poll() in (None, 0), robots[ns].output

    os.environ["ROS_DOMAIN_ID"] = domain
    rclpy.init()
    client = Client()
    try:
        for ns in ROBOTS[:2]:
            start_robot(ns)
        yield client, model, plans, edge, robots, start_robot
    finally:
        client.destroy_node()
        rclpy.shutdown()
        for launch in (*robots.values(), edge):
            launch.stop()
        print_outputs({**robots, "edge": edge}, 20)


def test_two_robots_share_one_edge_and_one_leaving_does_not_disturb_the_other(fleet):
    client, model, plans, edge, robots, start_robot = fleet
    images = {"robot1": "dog.jpg", "robot2": "person.jpg", "robot3": "horses.jpg"}

    def served(names, plan_of):
        counts = {ns: len(client.detections[ns]) for ns in names}
        sent = {ns: client.send(ns, load_sample(images[ns])) for ns in names}
        for ns in names:
            client.spin_until(lambda ns=ns, c=counts[ns]: len(client.detections[ns]) > c, f"{ns}'s detections")
            got = client.detections[ns][counts[ns]]
            assert got.header.stamp == sent[ns].header.stamp and got.header.frame_id == f"{ns}_camera"
            assert got.plan_spec == plan_of(ns), ns
            _same(got, model.reference(cv2.cvtColor(load_sample(images[ns]), cv2.COLOR_BGR2RGB)))

    def listed(names):
        client.spin_until(lambda: all(client.plans[ns] for ns in names), f"{names}' plans")
        want = {client.plans[ns][-1].session for ns in names}
        client.spin_until(lambda: client.status and set(client.status[-1].robot_sessions) == want
                          and client.status[-1].frames_in_flight == 0, f"the edge's heartbeat listing {names} only")
        return client.status[-1]

    for _ in range(2):                                    # both robots' frames in flight on the edge at once
        served(ROBOTS[:2], lambda ns: plans[ns].spec())
    last = listed(ROBOTS[:2])
    assert len(last.robot_busy_fraction) == len(last.robot_service_ms) == len(last.robot_queue_ms) == 2
    assert 0.0 < sum(last.robot_busy_fraction) <= 1.0 + 1e-6
    assert last.full and last.max_robots == 2

    # admission: the edge is full, so robot3 is refused and answers its frames all-local, exactly
    start_robot("robot3")
    local = Plan.local(model.graph, "yolov3_tiny").spec()
    served(ROBOTS, lambda ns: local if ns == "robot3" else plans[ns].spec())
    assert robots["robot1"].poll() is None and robots["robot2"].poll() is None
    assert list(listed(ROBOTS[:2]).robot_sessions) and edge.poll() is None

    robots["robot1"].stop()                               # one robot leaves (its nodes stop): its place frees
    last = listed(ROBOTS[1:])
    assert last.full                                      # robot3 took the place
    client.spin_until(lambda: client.plans["robot3"][-1].plan_spec == plans["robot3"].spec(),
                      "robot3 on its own plan once admitted")
    for _ in range(2):
        n = len(client.detections["robot2"])
        sent = client.send("robot2", load_sample("horses.jpg"))
        client.spin_until(lambda n=n: len(client.detections["robot2"]) > n, "robot2's detections after robot1 left")
        got = client.detections["robot2"][n]
        assert got.header.stamp == sent.header.stamp and got.plan_spec == plans["robot2"].spec()
        _same(got, model.reference(cv2.cvtColor(load_sample("horses.jpg"), cv2.COLOR_BGR2RGB)))
    served(ROBOTS[2:], lambda ns: plans[ns].spec())
    assert edge.poll() is None                            # the one edge process served them all, and still runs
    for ns, launch in robots.items():                     # each robot's outputs reached its own aggregator only
        foreign = [ln for ln in launch.output.get("aggregator_node", ()) if "not one this node serves" in ln]
        assert not foreign, (ns, foreign[:3])
